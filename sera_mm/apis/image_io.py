"""Turn the image inputs the inference API accepts into 3-channel BGR uint8
arrays (the layout mmcv's loaders produce and the data pipeline expects).

Torch-free (OpenCV, numpy, optional pillow): the ONNX Runtime tools load
images through it too.
"""
import os
import os.path as osp
from pathlib import Path
from typing import Optional, Tuple, Union

import cv2
import numpy as np

try:
    from PIL import Image as PILImage
except ImportError:  # pillow is optional here
    PILImage = None

ImageInput = Union[str, Path, np.ndarray, 'PILImage.Image']


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array // 257).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise ValueError(f'{name}: expected a uint8 (or uint16/bool) image, got '
                     f'dtype {array.dtype}')


def to_bgr_uint8(array: np.ndarray, name: str = 'image') -> np.ndarray:
    """Normalise an array image to (H, W, 3) uint8 BGR.

    Accepts (H, W) and (H, W, 1) grayscale, (H, W, 3) BGR and (H, W, 4) BGRA
    (alpha dropped), in uint8, uint16 (scaled) or bool.

    Raises:
        ValueError: other shapes or dtypes, or an empty image.
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f'{name}: expected a numpy array, got {type(array)}')
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3
                                    and array.shape[2] not in (3, 4)):
        raise ValueError(f'{name}: expected shape (H, W), (H, W, 1), '
                         f'(H, W, 3) or (H, W, 4), got {array.shape}')
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f'{name}: empty image of shape {array.shape}')
    array = _to_uint8(array, name)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.shape[2] == 4:
        return np.ascontiguousarray(array[..., :3])
    return np.ascontiguousarray(array)


def load_image_bgr(image: ImageInput) -> Tuple[np.ndarray, Optional[str]]:
    """Load an image given as a path, an array or a PIL image.

    Args:
        image: a file path (decoded like mmcv's ``imread`` in the data
            pipeline: grayscale expanded, alpha dropped), an ndarray
            (H, W[, C]) in BGR channel order, or a ``PIL.Image`` (any mode;
            converted to RGB, then BGR).

    Returns:
        ``(img, img_path)``: (H, W, 3) uint8 BGR, and the path or None.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be decoded, or the array is unusable.
        TypeError: another input type.
    """
    if isinstance(image, (str, Path)):
        path = os.fspath(image)
        if not osp.isfile(path):
            raise FileNotFoundError(f'image file not found: {path}')
        # what mmcv.imread(path, 'color', channel_order='bgr') does with its
        # default OpenCV backend (EXIF orientation applied, grayscale
        # expanded, alpha dropped), without importing mmcv (and torch)
        img = cv2.imdecode(np.fromfile(path, dtype=np.uint8),
                           cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f'cannot decode image file: {path}')
        return to_bgr_uint8(img, path), path
    if isinstance(image, np.ndarray):
        return to_bgr_uint8(image), None
    if PILImage is not None and isinstance(image, PILImage.Image):
        rgb = np.asarray(image.convert('RGB'))
        return np.ascontiguousarray(rgb[..., ::-1]), getattr(
            image, 'filename', None) or None
    raise TypeError('image must be a path, a numpy array or a PIL image, got '
                    f'{type(image)}')
