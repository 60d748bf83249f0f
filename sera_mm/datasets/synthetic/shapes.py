"""Shape geometry and rasterisation for the synthetic referring benchmark.

Every shape is described by polygons in pixel coordinates (x, y): one or
more outer polygons and, for shapes with a hole (the ring), inner polygons
that are cut out. Vertices are rounded to two decimals *before* rasterising,
so the polygons written to ``instances.json`` decode (with pycocotools) to
exactly the pixels that were painted in the image.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils

#: Category names, in category-id order (id = index + 1).
SHAPE_NAMES = ('circle', 'square', 'triangle', 'star', 'ring', 'cross',
               'polygon')
#: Shapes that come in a 'thin' and a 'thick' variant.
THICKNESS_SHAPES = ('ring', 'cross')
THICKNESSES = ('thin', 'thick')

_CIRCLE_VERTICES = 48
# Inner/outer radius of a ring and arm half-width/radius of a cross.
_RING_INNER = {'thin': 0.78, 'thick': 0.5}
_CROSS_HALF_WIDTH = {'thin': 0.14, 'thick': 0.3}


@dataclass(frozen=True)
class ShapeGeometry:
    """Polygons of one shape.

    Attributes:
        outer: polygons (N_i, 2) float64 (x, y) whose union is the shape.
        holes: polygons (M_j, 2) cut out of the union (empty for simple
            shapes).
    """
    outer: Sequence[np.ndarray]
    holes: Sequence[np.ndarray] = ()

    @property
    def has_holes(self) -> bool:
        return len(self.holes) > 0

    def coco_polygons(self) -> List[List[float]]:
        """Outer polygons as COCO flat lists ``[x1, y1, x2, y2, ...]``.

        Only meaningful for shapes without holes.
        """
        return [[float(v) for v in poly.reshape(-1)] for poly in self.outer]


def _regular(cx: float, cy: float, radii: np.ndarray,
             angles: np.ndarray) -> np.ndarray:
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)],
                   axis=1)
    return np.round(pts, 2)


def shape_geometry(shape: str,
                   cx: float,
                   cy: float,
                   radius: float,
                   angle: float = 0.0,
                   thickness: Optional[str] = None,
                   rng: Optional[np.random.Generator] = None
                   ) -> ShapeGeometry:
    """Polygons of a shape centred at (cx, cy).

    Args:
        shape: one of :data:`SHAPE_NAMES`.
        cx, cy: centre in pixels.
        radius: circumradius in pixels (the shape fits in a disc of it).
        angle: rotation in radians.
        thickness: 'thin' or 'thick' for ring and cross, else None.
        rng: random generator, needed for 'polygon' (irregular vertices).

    Returns:
        ShapeGeometry with vertices rounded to 2 decimals.
    """
    if shape not in SHAPE_NAMES:
        raise ValueError(f'shape must be one of {SHAPE_NAMES}, got {shape!r}')
    if radius <= 0:
        raise ValueError(f'radius must be positive, got {radius}')
    if shape in THICKNESS_SHAPES and thickness not in THICKNESSES:
        raise ValueError(f'thickness for a {shape} must be one of '
                         f'{THICKNESSES}, got {thickness!r}')
    if shape == 'circle':
        t = np.linspace(0, 2 * np.pi, _CIRCLE_VERTICES, endpoint=False)
        return ShapeGeometry([_regular(cx, cy, np.full_like(t, radius), t)])
    if shape == 'ring':
        t = np.linspace(0, 2 * np.pi, _CIRCLE_VERTICES, endpoint=False)
        outer = _regular(cx, cy, np.full_like(t, radius), t)
        inner_radius = radius * _RING_INNER[thickness]
        inner = _regular(cx, cy, np.full_like(t, inner_radius), t)
        return ShapeGeometry([outer], [inner])
    if shape == 'square':
        t = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        return ShapeGeometry([_regular(cx, cy, np.full(4, radius * 0.9), t)])
    if shape == 'triangle':
        t = angle - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        # centre the triangle's bounding box vertically
        return ShapeGeometry(
            [_regular(cx, cy + radius * 0.2, np.full(3, radius * 1.1), t)])
    if shape == 'star':
        t = angle - np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
        return ShapeGeometry([_regular(cx, cy, r, t)])
    if shape == 'cross':
        h = _CROSS_HALF_WIDTH[thickness]
        # 12 corners of a plus sign, unit circumradius ~ 1
        xs = np.array([h, h, 1, 1, h, h, -h, -h, -1, -1, -h, -h]) * radius
        ys = np.array([-1, -h, -h, h, h, 1, 1, h, h, -h, -h, -1]) * radius
        ca, sa = np.cos(angle), np.sin(angle)
        pts = np.stack([cx + xs * ca - ys * sa, cy + xs * sa + ys * ca], 1)
        return ShapeGeometry([np.round(pts, 2)])
    # irregular polygon: star-shaped (hence simple) with jittered vertices
    if rng is None:
        raise ValueError('rng is required to draw an irregular polygon')
    n = int(rng.integers(6, 10))
    base = np.arange(n) * 2 * np.pi / n
    t = angle + base + rng.uniform(-0.3, 0.3, n) * (2 * np.pi / n)
    r = radius * rng.uniform(0.6, 1.0, n)
    return ShapeGeometry([_regular(cx, cy, r, t)])


def rasterize_polygons(polygons: Sequence[np.ndarray], height: int,
                       width: int) -> np.ndarray:
    """Union of polygons as a (height, width) bool mask, exactly as
    pycocotools decodes the same polygons from a COCO annotation."""
    flat = [[float(v) for v in np.asarray(p).reshape(-1)] for p in polygons]
    rles = mask_utils.frPyObjects(flat, height, width)
    rle = mask_utils.merge(rles) if len(rles) > 1 else rles[0]
    return mask_utils.decode(rle).astype(bool)


def rasterize(geometry: ShapeGeometry, height: int, width: int) -> np.ndarray:
    """Shape mask (height, width) bool: outer polygons minus holes."""
    mask = rasterize_polygons(geometry.outer, height, width)
    if geometry.has_holes:
        mask &= ~rasterize_polygons(geometry.holes, height, width)
    return mask


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a (H, W) bool mask with ``counts`` as str (JSON-ready)."""
    if mask.ndim != 2:
        raise ValueError(f'mask must be 2-D (H, W), got shape {mask.shape}')
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(rle['size'][0]), int(rle['size'][1])],
            'counts': rle['counts'].decode('ascii')}
