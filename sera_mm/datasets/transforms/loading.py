"""Loading an image (always 3-channel BGR) and the ref's mask."""
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from pycocotools import mask as mask_utils

from sera_mm.registry import TRANSFORMS


def to_bgr3(img: np.ndarray, name: str = 'image') -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) BGR.

    Grayscale is replicated; alpha is dropped (as if over black is not
    assumed: the colour channels are kept as stored).

    Raises:
        ValueError: other shapes, or an empty (zero height or width) image,
            naming ``name``.
    """
    if img.ndim in (2, 3) and 0 in img.shape[:2]:
        raise ValueError(f'{name}: empty image of shape {img.shape}; '
                         'expected a height and width of at least 1 pixel')
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    raise ValueError(f'{name}: expected a grayscale, BGR or BGRA image, got '
                     f'an array of shape {img.shape}')


def to_uint8(img: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by dropping the low byte (as OpenCV's colour read);
    bool -> {0, 255}; other types are clipped to [0, 255]."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    return np.clip(img, 0, 255).astype(np.uint8)


@TRANSFORMS.register_module()
class LoadReferImage(BaseTransform):
    """Read ``results['img_path']`` as a 3-channel BGR uint8 image.

    Grayscale, 16-bit and RGBA files load as 3-channel 8-bit BGR (mmcv's
    convention), so the rest of the pipeline sees one format. Pixels are
    read as stored (no EXIF rotation), which is how COCO annotations are
    drawn. When ``results`` already holds an ``img`` array (inference on a
    given image) it is converted instead of reading the file.

    Adds ``img`` (H, W, 3), ``img_shape`` and ``ori_shape`` (H, W).

    Args:
        backend_args: mmengine file backend arguments (local by default).

    Raises:
        FileNotFoundError: the file is missing, empty or not a readable
            image (truncated, corrupt, zero width or height).
        ValueError: a given ``img`` array that is empty or of another shape.
    """

    def __init__(self, backend_args: Optional[dict] = None) -> None:
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results.get('img_path')
        if isinstance(results.get('img'), np.ndarray):
            img = results['img']
        else:
            try:
                buf = fileio.get(path, backend_args=self.backend_args)
            except FileNotFoundError:
                raise FileNotFoundError(f'image not found: {path}') from None
            if not len(buf):
                raise FileNotFoundError(f'image unreadable (an empty file, 0 '
                                        f'bytes): {path}')
            img = cv2.imdecode(np.frombuffer(buf, np.uint8),
                               cv2.IMREAD_UNCHANGED)
            if img is None:
                raise FileNotFoundError(f'image unreadable (not an image '
                                        f'file?): {path}')
        img = to_bgr3(to_uint8(img), str(path))
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """COCO polygons, compressed RLE or uncompressed RLE -> (H, W) uint8
    mask in {0, 1}.

    Raises:
        ValueError: an unrecognised segmentation format.
    """
    if isinstance(segmentation, list):
        if segmentation and not isinstance(segmentation[0], (list, tuple)):
            segmentation = [segmentation]  # one flat polygon
        # fewer than 3 points is no area (and 4 numbers would be read by
        # pycocotools as a box)
        polygons = [[float(v) for v in p] for p in segmentation
                    if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), np.uint8)
        rles = mask_utils.frPyObjects(polygons, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and 'counts' in segmentation:
        rle = dict(segmentation)
        if isinstance(rle['counts'], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle['counts'], str):
            rle['counts'] = rle['counts'].encode('ascii')
    else:
        raise ValueError('segmentation: expected COCO polygons (a list) or '
                         'an RLE dict with "counts", got '
                         f'{type(segmentation).__name__}')
    mask = mask_utils.decode(rle)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return (mask > 0).astype(np.uint8)


def decode_union(segmentations, height: int, width: int) -> np.ndarray:
    """Union of several COCO segmentations (each polygons or RLE, see
    :func:`decode_segmentation`) as an (H, W) uint8 mask in {0, 1}; an
    empty list gives an all-zero mask (a no-target expression)."""
    mask = np.zeros((height, width), np.uint8)
    for seg in segmentations:
        part = decode_segmentation(seg, height, width)
        if part.shape != mask.shape:
            raise ValueError(f'segmentation decodes to {part.shape}, '
                             f'expected {mask.shape}')
        mask |= part
    return mask


@TRANSFORMS.register_module()
class LoadReferMask(BaseTransform):
    """Decode the ref's ``segmentation`` at the image's original size.

    Adds ``gt_seg_map`` (H_ori, W_ori) uint8 {0, 1} and registers it in
    ``seg_fields``. Put it before ``Letterbox`` for training (the mask is
    resized with the image) and after it for evaluation (the metric compares
    at the original resolution).

    Generalised refs (:class:`~sera_mm.datasets.GReferDataset`) carry
    ``segmentations``, a list of annotations' segmentations, instead: the
    mask is their union, all zeros for an empty list (no target).

    A sample without a ``segmentation`` or ``segmentations`` key (inference
    on a new image) is passed through unchanged; dataset items always carry
    one.

    Raises:
        ValueError: the decoded mask does not match ``ori_shape``.
    """

    def transform(self, results: dict) -> dict:
        if 'segmentations' not in results and 'segmentation' not in results:
            return results
        height = int(results.get('height', results['ori_shape'][0]))
        width = int(results.get('width', results['ori_shape'][1]))
        if 'segmentations' in results:
            mask = decode_union(results['segmentations'], height, width)
        else:
            mask = decode_segmentation(results['segmentation'], height,
                                       width)
        ori: Optional[tuple] = results.get('ori_shape')
        if ori is not None and tuple(ori[:2]) != mask.shape:
            raise ValueError(
                f'ref_id {results.get("ref_id")}: the annotation is '
                f'{mask.shape} (height, width from instances.json) but the '
                f'image {results.get("img_path")} is {tuple(ori[:2])}')
        results['gt_seg_map'] = mask
        fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in fields:
            fields.append('gt_seg_map')
        return results
