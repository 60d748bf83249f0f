"""Boxes from masks, and box IoU (numpy only).

Coordinates are continuous pixel edges, as COCO boxes are: pixel ``(row r,
column c)`` covers ``[c, c + 1) x [r, r + 1)``, so the tight box of a mask
is ``[x_min, y_min, x_max + 1, y_max + 1]`` over its foreground pixels (a
one-pixel mask is a 1 x 1 box), and a COCO ``[x, y, w, h]`` box is ``[x, y,
x + w, y + h]``. IoU has no ``+ 1`` terms (MMDetection 3.x's
``bbox_overlaps`` convention).
"""
from typing import Optional, Sequence

import numpy as np

__all__ = ['mask_to_box', 'xywh_to_xyxy', 'box_iou', 'flip_xywh']


def mask_to_box(mask: np.ndarray) -> Optional[list]:
    """The tight box ``[x1, y1, x2, y2]`` (ints) of the pixels ``> 0`` of an
    (H, W) mask (a leading axis of size 1 is dropped), or None when no pixel
    is set.

    Raises:
        ValueError: not a 2-D mask.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f'mask_to_box: expected an (H, W) mask, got shape '
                         f'{mask.shape}')
    rows = np.flatnonzero((mask > 0).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((mask > 0).any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def xywh_to_xyxy(box: Sequence[float]) -> list:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]``.

    Raises:
        ValueError: not four numbers, or a negative width or height.
    """
    if len(box) != 4:
        raise ValueError(f'expected a box [x, y, w, h], got {box!r}')
    x, y, w, h = (float(v) for v in box)
    if w < 0 or h < 0:
        raise ValueError(f'box {list(box)}: negative width or height')
    return [x, y, x + w, y + h]


def flip_xywh(box: Sequence[float], width: float) -> list:
    """A COCO ``[x, y, w, h]`` box mirrored left-right in an image of that
    width."""
    x, y, w, h = (float(v) for v in box)
    return [width - x - w, y, w, h]


def box_iou(a: Optional[Sequence[float]],
            b: Optional[Sequence[float]]) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes; None is no box: 1.0 when both
    are None, 0.0 when one is; 0.0 for two boxes of zero area."""
    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + \
        max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
    return inter / union if union > 0 else 0.0
