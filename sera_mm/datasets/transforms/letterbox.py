"""Letterbox resize: keep the aspect ratio, pad to a square, remember how to
undo it."""
from typing import Sequence, Tuple, Union

import mmcv
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform

from sera_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class Letterbox(BaseTransform):
    """Scale the long side to ``size`` (keeping the ratio), then pad right
    and bottom to ``size x size``.

    Uses mmcv's ``imrescale``/``impad``. Masks in ``seg_fields`` get nearest
    resizing and ``seg_pad_val`` padding.

    Adds/updates: ``img`` (size, size, 3), ``img_shape`` (resized, before
    padding), ``pad_shape`` (size, size), ``scale_factor`` (w_scale,
    h_scale), ``keep_ratio`` and ``img_padding_size`` = [left, right, top,
    bottom] (what mmseg's ``BaseSegmentor.postprocess_result`` crops before
    resizing the prediction back to ``ori_shape``; see
    :func:`undo_letterbox`).

    Args:
        size: side of the square output.
        pad_val: image padding value.
        seg_pad_val: mask padding value.
        interpolation: image interpolation (mmcv name).
    """

    def __init__(self,
                 size: int = 416,
                 pad_val: Union[int, float] = 0,
                 seg_pad_val: int = 0,
                 interpolation: str = 'bilinear') -> None:
        if not isinstance(size, int) or size < 8:
            raise ValueError(f'size must be an int >= 8, got {size!r}')
        self.size = size
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.interpolation = interpolation

    def _new_hw(self, h: int, w: int) -> Tuple[int, int]:
        scale = self.size / max(h, w)
        return (min(self.size, max(1, int(round(h * scale)))),
                min(self.size, max(1, int(round(w * scale)))))

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        nh, nw = self._new_hw(h, w)
        img = mmcv.imresize(img, (nw, nh), interpolation=self.interpolation)
        pad = (0, 0, self.size - nw, self.size - nh)  # left, top, right, bot
        results['img'] = mmcv.impad(img, padding=pad, pad_val=self.pad_val)
        for key in results.get('seg_fields', []):
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


def undo_letterbox(data: torch.Tensor, img_padding_size: Sequence[int],
                   ori_shape: Sequence[int],
                   mode: str = 'bilinear') -> torch.Tensor:
    """Map a letterboxed map (C, S, S) back to the original image (C, H, W):
    crop the padding [left, right, top, bottom], resize to ``ori_shape``.

    Raises:
        ValueError: ``data`` is not 3-D.
    """
    if data.dim() != 3:
        raise ValueError(f'data: expected (C, S, S), got {tuple(data.shape)}')
    left, right, top, bottom = (int(v) for v in img_padding_size)
    h, w = data.shape[-2:]
    data = data[:, top:h - bottom, left:w - right]
    kwargs = {} if mode == 'nearest' else dict(align_corners=False)
    out = F.interpolate(data[None].float(), size=tuple(ori_shape[:2]),
                        mode=mode, **kwargs)[0]
    return out.to(data.dtype) if mode == 'nearest' else out


__all__ = ['Letterbox', 'undo_letterbox']
