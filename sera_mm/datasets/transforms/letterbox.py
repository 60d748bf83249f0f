"""Letterbox resize: keep the aspect ratio, pad to a square, remember how to
undo it."""
from typing import Sequence, Tuple, Union

import mmcv
from mmcv.transforms import BaseTransform

from sera_mm.registry import TRANSFORMS
from sera_mm.structures.letterbox import undo_letterbox  # noqa: F401
from .letterbox_geometry import letterbox_hw


@TRANSFORMS.register_module()
class Letterbox(BaseTransform):
    """Scale the long side to ``size`` (keeping the ratio), then pad right
    and bottom to ``size x size``.

    Uses mmcv's ``imresize``/``impad``. Masks (``gt_seg_map`` and every key
    in ``seg_fields``) get nearest resizing and ``seg_pad_val`` padding.

    Adds/updates: ``img`` (size, size, 3), ``img_shape`` (resized, before
    padding), ``pad_shape`` (size, size), ``scale_factor`` (w_scale,
    h_scale), ``keep_ratio`` and ``img_padding_size`` = [left, right, top,
    bottom] (what mmseg's ``BaseSegmentor.postprocess_result`` crops before
    resizing the prediction back to ``ori_shape``; see
    :func:`undo_letterbox`).

    Args:
        size: side of the square output.
        pad_val: image padding value: a number, or one value per channel
            in the loaded image's channel order (BGR), e.g. a mean colour
            that normalises to 0 (as CRIS-family code pads).
        seg_pad_val: mask padding value.
        interpolation: image interpolation (mmcv name).
    """

    def __init__(self,
                 size: int = 416,
                 pad_val: Union[int, float, Sequence[float]] = 0,
                 seg_pad_val: int = 0,
                 interpolation: str = 'bilinear') -> None:
        if not isinstance(size, int) or size < 8:
            raise ValueError(f'size must be an int >= 8, got {size!r}')
        self.size = size
        if isinstance(pad_val, (list, tuple)):
            if len(pad_val) != 3 or not all(
                    isinstance(v, (int, float)) for v in pad_val):
                raise ValueError(f'pad_val must be a number or 3 numbers '
                                 f'(one per channel), got {pad_val!r}')
            pad_val = tuple(float(v) for v in pad_val)
        elif not isinstance(pad_val, (int, float)):
            raise ValueError(f'pad_val must be a number or 3 numbers (one '
                             f'per channel), got {pad_val!r}')
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.interpolation = interpolation

    def _new_hw(self, h: int, w: int) -> Tuple[int, int]:
        return letterbox_hw(h, w, self.size)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if not hasattr(img, 'shape') or img.ndim not in (2, 3):
            raise ValueError(f'img: expected an (H, W[, C]) array, got '
                             f'{getattr(img, "shape", type(img).__name__)}')
        h, w = img.shape[:2]
        nh, nw = self._new_hw(h, w)
        img = mmcv.imresize(img, (nw, nh), interpolation=self.interpolation)
        pad = (0, 0, self.size - nw, self.size - nh)  # left, top, right, bot
        results['img'] = mmcv.impad(img, padding=pad, pad_val=self.pad_val)
        seg_keys = list(results.get('seg_fields', []))
        if 'gt_seg_map' in results and 'gt_seg_map' not in seg_keys:
            seg_keys.append('gt_seg_map')
        for key in seg_keys:
            seg = mmcv.imresize(results[key], (nw, nh),
                                interpolation='nearest')
            results[key] = mmcv.impad(seg, padding=pad,
                                      pad_val=self.seg_pad_val)
        results['img_shape'] = (nh, nw)
        results['pad_shape'] = (self.size, self.size)
        results['scale_factor'] = (nw / w, nh / h)
        results['keep_ratio'] = True
        results['img_padding_size'] = [0, self.size - nw, 0, self.size - nh]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'pad_val={self.pad_val}, seg_pad_val={self.seg_pad_val})')


__all__ = ['Letterbox', 'undo_letterbox']
