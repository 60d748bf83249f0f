"""The one image path of SERA-MM: decode a file and bring any image to the
(H, W, 3) uint8 BGR layout the data pipeline works on.

The dataset (:class:`~sera_mm.datasets.transforms.LoadReferImage`), the
inference API, the web demo, the ONNX Runtime tools and the pictures of the
visualisation hook all read images through these functions, so a file gives
the same pixels everywhere.

Conventions (one policy for every caller):

- **EXIF orientation is not applied**: pixels are used as stored in the
  file. REFER / COCO masks are drawn on the stored pixels, so this is what
  keeps images and annotations aligned; a photo whose camera wrote an
  orientation tag is segmented (and drawn) as stored. To segment it upright,
  rotate it first (e.g. ``PIL.ImageOps.exif_transpose``) and pass the array
  or PIL image.
- Grayscale is replicated to three channels; an alpha channel is dropped
  (colour kept as stored, not composited).
- 16-bit images keep their high byte (``v >> 8``, what OpenCV's 8-bit read
  does); ``bool`` becomes {0, 255}; any other dtype (float, int32, ...) is
  refused with an error naming the input, as its value range is unknown.

Torch-free (OpenCV, numpy, optional pillow): the ONNX Runtime tools use it
without PyTorch.
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

__all__ = ['ImageInput', 'ImageDecodeError', 'to_uint8', 'to_bgr3',
           'as_bgr_uint8', 'decode_image', 'read_image', 'load_image']


class ImageDecodeError(ValueError):
    """The bytes of an image file cannot be decoded (empty, truncated,
    corrupt or not an image)."""


def to_uint8(img: np.ndarray, name: str = 'image') -> np.ndarray:
    """uint8 as is, uint16 -> its high byte, bool -> {0, 255}.

    Raises:
        ValueError: another dtype, naming ``name``.
    """
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    raise ValueError(f'{name}: expected a uint8, uint16 or bool image, got '
                     f'dtype {img.dtype}')


def to_bgr3(img: np.ndarray, name: str = 'image') -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> (H, W, 3), same dtype.

    Grayscale is replicated; alpha is dropped (the colour channels kept as
    stored).

    Raises:
        ValueError: other shapes, or an empty (zero height or width) image,
            naming ``name``.
    """
    if not isinstance(img, np.ndarray):
        raise ValueError(f'{name}: expected a numpy array, got '
                         f'{type(img).__name__}')
    if img.ndim in (2, 3) and 0 in img.shape[:2]:
        raise ValueError(f'{name}: empty image of shape {img.shape}; '
                         'expected a height and width of at least 1 pixel')
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    raise ValueError(f'{name}: expected a grayscale, BGR or BGRA image of '
                     f'shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got '
                     f'{img.shape}')


def as_bgr_uint8(img: np.ndarray, name: str = 'image') -> np.ndarray:
    """Any accepted array image -> (H, W, 3) uint8 BGR
    (:func:`to_bgr3` of :func:`to_uint8`)."""
    if not isinstance(img, np.ndarray):
        raise ValueError(f'{name}: expected a numpy array, got '
                         f'{type(img).__name__}')
    return to_bgr3(to_uint8(img, name), name)


def decode_image(buf: Union[bytes, bytearray, memoryview, np.ndarray],
                 name: str = 'image') -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ...) to (H, W, 3) uint8 BGR,
    pixels as stored (EXIF orientation not applied).

    Raises:
        ImageDecodeError: empty or undecodable bytes (truncated, corrupt,
            not an image), naming ``name``.
        ValueError: an image of an unsupported dtype.
    """
    data = np.frombuffer(buf, np.uint8) if not isinstance(
        buf, np.ndarray) else buf.reshape(-1).view(np.uint8)
    if data.size == 0:
        raise ImageDecodeError(f'image unreadable (an empty file, 0 bytes): '
                               f'{name}')
    # IMREAD_UNCHANGED keeps 16-bit and alpha (converted below by our own
    # rules) and ignores the EXIF orientation tag
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError(f'image unreadable (not an image file, or '
                               f'truncated or corrupt): {name}')
    return as_bgr_uint8(img, name)


def read_image(path: Union[str, Path]) -> np.ndarray:
    """Read and decode a local image file (:func:`decode_image`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it cannot be decoded.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file not found: {path}')
    return decode_image(np.fromfile(path, dtype=np.uint8), path)


def load_image(image: ImageInput,
               name: str = 'image') -> Tuple[np.ndarray, Optional[str]]:
    """Load an image given as a path, an array or a PIL image.

    Args:
        image: a file path (:func:`read_image`), an ndarray (H, W[, C]) in
            BGR(A) channel order (:func:`as_bgr_uint8`), or a
            ``PIL.Image`` (any mode; converted to RGB, then BGR; 16-bit
            ``I;16`` modes keep their high byte, as their files do).
        name: what errors call an array or PIL input.

    Returns:
        ``(img, img_path)``: (H, W, 3) uint8 BGR, and the path or None.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be decoded, or the array is unusable.
        TypeError: another input type.
    """
    if isinstance(image, (str, Path)):
        path = os.fspath(image)
        return read_image(path), path
    if isinstance(image, np.ndarray):
        return as_bgr_uint8(image, name), None
    if PILImage is not None and isinstance(image, PILImage.Image):
        path = getattr(image, 'filename', None) or None
        if image.mode.startswith('I;16'):  # 16-bit: high byte, as a file
            deep = np.asarray(image).astype(np.uint16)  # native byte order
            return as_bgr_uint8(deep, name), path
        rgb = np.asarray(image.convert('RGB'))
        if 0 in rgb.shape[:2]:
            raise ValueError(f'{name}: empty image of size {image.size}')
        return np.ascontiguousarray(rgb[..., ::-1]), path
    raise TypeError('image must be a path, a numpy array or a PIL image, got '
                    f'{type(image).__name__}')
