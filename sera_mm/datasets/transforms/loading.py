"""Loading an image (always 3-channel BGR) and the ref's mask.

Images are decoded and converted by :mod:`sera_mm.utils.image_io`, the one
image path shared with inference, the demo, the ONNX tools and the
pictures (pixels as stored: no EXIF rotation; grayscale replicated, alpha
dropped, 16-bit to its high byte).
"""
from collections import OrderedDict
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from pycocotools import mask as mask_utils

from sera_mm.registry import TRANSFORMS
from sera_mm.utils.image_io import (ImageDecodeError, as_bgr_uint8,
                                    decode_image)

__all__ = ['LoadReferImage', 'LoadReferMask', 'decode_segmentation',
           'decode_union']


@TRANSFORMS.register_module()
class LoadReferImage(BaseTransform):
    """Read ``results['img_path']`` as a 3-channel BGR uint8 image.

    Grayscale, 16-bit and RGBA files load as 3-channel 8-bit BGR (mmcv's
    convention), so the rest of the pipeline sees one format; pixels are
    read as stored (no EXIF rotation), which is how COCO annotations are
    drawn (:mod:`sera_mm.utils.image_io`). When ``results`` already holds an
    ``img`` array (inference on a given image) it is converted by the same
    rules instead of reading the file, so inference runs the unmodified
    test pipeline.

    Adds ``img`` (H, W, 3), ``img_shape`` and ``ori_shape`` (H, W).

    Decoded-image cache: with ``cache_max_bytes > 0`` the decoded images
    of the most recently read paths are kept (least recently used dropped
    first, at most that many bytes), and a repeat read returns a copy
    instead of reading and decoding the file again. Training reads every
    image once per epoch, and a test split reads an image once per
    expression, so on a small dataset almost every read becomes a copy.
    Each dataloader worker holds its own cache (up to ``num_workers x
    cache_max_bytes`` in all); the cache assumes the files do not change
    while it runs.

    Args:
        backend_args: mmengine file backend arguments (local by default).
        cache_max_bytes: bound of the decoded-image cache in bytes; 0 (the
            default) reads and decodes every time.

    Raises:
        FileNotFoundError: the file is missing, empty or not a readable
            image (truncated, corrupt, zero width or height).
        ValueError: a given ``img`` array (or a decoded file) of another
            shape or dtype, or empty; a negative ``cache_max_bytes``.
    """

    def __init__(self, backend_args: Optional[dict] = None,
                 cache_max_bytes: int = 0) -> None:
        if not isinstance(cache_max_bytes, int) or cache_max_bytes < 0:
            raise ValueError(f'LoadReferImage: cache_max_bytes must be an '
                             f'int >= 0, got {cache_max_bytes!r}')
        self.backend_args = backend_args
        self.cache_max_bytes = cache_max_bytes
        self._cache: 'OrderedDict[str, np.ndarray]' = OrderedDict()
        self._cache_bytes = 0

    def _read(self, path) -> np.ndarray:
        """Read and decode ``path`` (through the cache when it is on)."""
        key = str(path)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached.copy()
        try:
            buf = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(f'image not found: {path}') from None
        try:
            img = decode_image(buf, key)
        except ImageDecodeError as e:
            raise FileNotFoundError(str(e)) from None
        if 0 < img.nbytes <= self.cache_max_bytes:
            self._cache[key] = img.copy()
            self._cache_bytes += img.nbytes
            while self._cache_bytes > self.cache_max_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cache_bytes -= dropped.nbytes
        return img

    def transform(self, results: dict) -> dict:
        path = results.get('img_path')
        if isinstance(results.get('img'), np.ndarray):
            img = as_bgr_uint8(results['img'], str(path))
        else:
            img = self._read(path)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(backend_args={self.backend_args!r}, '
                f'cache_max_bytes={self.cache_max_bytes})')


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
