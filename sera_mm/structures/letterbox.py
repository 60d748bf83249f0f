"""Letterbox geometry the model needs: map a letterboxed map back to the
original image (the transform that letterboxes lives in
:mod:`sera_mm.datasets.transforms.letterbox`)."""
from typing import Sequence

import torch
import torch.nn.functional as F


def undo_letterbox(data: torch.Tensor, img_padding_size: Sequence[int],
                   ori_shape: Sequence[int],
                   mode: str = 'bilinear',
                   align_corners: bool = False) -> torch.Tensor:
    """Map a letterboxed map back to the original image: crop the padding
    ``img_padding_size`` = [left, right, top, bottom] and resize to
    ``ori_shape`` (what mmseg's ``BaseSegmentor.postprocess_result`` does
    with logits).

    Args:
        data: (C, S, S) or (S, S) logits or mask.
        img_padding_size: [left, right, top, bottom] from :class:`Letterbox`.
        ori_shape: (H, W[, ...]) of the original image.
        mode: 'bilinear' for logits (float result), 'nearest' for masks
            (dtype kept).
        align_corners: of the bilinear resize (the segmentor's setting).

    Returns:
        (C, H, W) or (H, W), like ``data``.

    Raises:
        ValueError: ``data`` is not 2-D or 3-D, or the padding leaves
            nothing.
    """
    if data.dim() not in (2, 3):
        raise ValueError(f'data: expected (C, S, S) or (S, S), got '
                         f'{tuple(data.shape)}')
    squeeze = data.dim() == 2
    if squeeze:
        data = data[None]
    left, right, top, bottom = (int(v) for v in img_padding_size)
    h, w = data.shape[-2:]
    if left + right >= w or top + bottom >= h:
        raise ValueError(f'img_padding_size: {list(img_padding_size)} '
                         f'leaves no pixel of a {h}x{w} map')
    crop = data[:, top:h - bottom, left:w - right]
    kwargs = {} if mode == 'nearest' else dict(align_corners=align_corners)
    out = F.interpolate(crop[None].float(), size=tuple(ori_shape[:2]),
                        mode=mode, **kwargs)[0]
    if mode == 'nearest':
        out = out.to(data.dtype)
    return out[0] if squeeze else out


__all__ = ['undo_letterbox']
