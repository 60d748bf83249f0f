"""Loading an image (always 3-channel BGR) and the ref's mask."""
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from pycocotools import mask as mask_utils

from sera_mm.registry import TRANSFORMS


def to_bgr3(img: np.ndarray, name: str = 'image') -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) BGR.

    Grayscale is replicated; alpha is dropped (as if over black is not
    assumed: the colour channels are kept as stored).

    Raises:
        ValueError: other shapes, naming ``name``.
    """
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


@TRANSFORMS.register_module()
class LoadReferImage(BaseTransform):
    """Read ``results['img_path']`` as a 3-channel BGR uint8 image.

    Grayscale, 16-bit and RGBA files load as 3-channel 8-bit BGR (mmcv's
    convention), so the rest of the pipeline sees one format.

    Adds ``img`` (H, W, 3), ``img_shape`` and ``ori_shape`` (H, W).

    Raises:
        FileNotFoundError: the file is missing or not a readable image.
    """

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise FileNotFoundError(f'image not found or unreadable: {path}')
        if img.dtype != np.uint8:
            img = cv2.normalize(img, None, 0, 255,
                                cv2.NORM_MINMAX).astype(np.uint8)
        img = to_bgr3(img, path)
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
        if not segmentation:
            return np.zeros((height, width), np.uint8)
        rles = mask_utils.frPyObjects(segmentation, height, width)
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


@TRANSFORMS.register_module()
class LoadReferMask(BaseTransform):
    """Decode the ref's ``segmentation`` at the image's original size.

    Adds ``gt_seg_map`` (H_ori, W_ori) uint8 {0, 1} and registers it in
    ``seg_fields``. Put it before ``Letterbox`` for training (the mask is
    resized with the image) and after it for evaluation (the metric compares
    at the original resolution).

    Raises:
        ValueError: the decoded mask does not match ``ori_shape``.
    """

    def transform(self, results: dict) -> dict:
        height = int(results.get('height', results['ori_shape'][0]))
        width = int(results.get('width', results['ori_shape'][1]))
        mask = decode_segmentation(results['segmentation'], height, width)
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
