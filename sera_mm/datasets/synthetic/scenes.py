"""Scene sampling for the synthetic referring benchmark.

A scene is a background (plain colour, smooth noise, or a crop of a CC0
photograph shipped with scikit-image) with 2-6 coloured shapes drawn in
order: later shapes occlude earlier ones, and the mask of a shape is only
its visible pixels. Placement keeps every shape at least
``MIN_VISIBLE_FRACTION`` visible and keeps shapes of the same colour apart,
so every shape stays recognisable.
"""
import functools
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .shapes import (SHAPE_NAMES, THICKNESS_SHAPES, THICKNESSES,
                     ShapeGeometry, rasterize, shape_geometry)

#: Named colours (RGB); chosen to be told apart at a glance.
COLOURS = {
    'red': (220, 35, 35),
    'green': (40, 170, 60),
    'blue': (40, 80, 225),
    'yellow': (245, 215, 40),
    'purple': (145, 55, 185),
    'orange': (250, 135, 25),
    'white': (245, 245, 245),
    'black': (20, 20, 20),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = ('small', 'large')
#: Circumradius ranges as fractions of the image side; disjoint so that
#: 'small' and 'large' differ by more than 2x in area.
SIZE_RANGES = {'small': (0.065, 0.09), 'large': (0.13, 0.165)}

#: (colour, shape) pairs held out for the compositional testB split: one
#: per shape, never drawn in train/val/testA scenes.
HELDOUT_PAIRS: Tuple[Tuple[str, str], ...] = (
    ('orange', 'circle'), ('red', 'square'), ('blue', 'triangle'),
    ('green', 'star'), ('yellow', 'ring'), ('purple', 'cross'),
    ('white', 'polygon'))

#: CC0 sample photographs of scikit-image used as backgrounds.
BACKGROUND_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'camera',
                     'coins', 'moon', 'brick', 'grass', 'gravel',
                     'immunohistochemistry', 'hubble_deep_field')
BACKGROUND_KINDS = ('plain', 'noise', 'photo')

MIN_VISIBLE_FRACTION = 0.6


@dataclass
class SceneObject:
    """One shape of a scene (index = drawing order, 0 drawn first)."""
    index: int
    shape: str
    colour: str
    size: str
    thickness: Optional[str]
    cx: float
    cy: float
    radius: float
    geometry: ShapeGeometry
    full_mask: np.ndarray  # (H, W) bool, before occlusion
    visible_mask: Optional[np.ndarray] = None  # (H, W) bool
    full_area: int = 0
    visible_area: int = 0

    @property
    def pair(self) -> Tuple[str, str]:
        return (self.colour, self.shape)

    @property
    def occluded(self) -> bool:
        return self.visible_area < self.full_area


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        objects: shapes in drawing order.
        background: 'plain' | 'noise' | 'photo:<name>'.
        cover: (N, N) float, ``cover[i, j]`` = fraction of object i's full
            area hidden by object j (0 unless j is drawn after i).
    """
    image: np.ndarray
    objects: List[SceneObject]
    background: str
    cover: np.ndarray = field(default=None)

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as (H, W, 3) uint8 RGB (loaded once)."""
    import skimage.data
    if name not in BACKGROUND_PHOTOS:
        raise ValueError(f'photo must be one of {BACKGROUND_PHOTOS}, '
                         f'got {name!r}')
    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img * 255.0 if img.max() <= 1 else img, 0,
                      255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    img.setflags(write=False)
    return img


def sample_background(rng: np.random.Generator, size: int,
                      kind: Optional[str] = None) -> Tuple[np.ndarray, str]:
    """Background (size, size, 3) uint8 RGB and its description."""
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.choice(3, p=[0.3, 0.3, 0.4]))]
    if kind == 'plain':
        grey = rng.uniform(85, 175)  # keeps black and white shapes visible
        tint = rng.uniform(-18, 18, 3)
        colour = np.clip(grey + tint, 0, 255).astype(np.uint8)
        return np.broadcast_to(colour, (size, size, 3)).copy(), 'plain'
    if kind == 'noise':
        cells = int(rng.integers(3, 9))
        # low-saturation colour noise so it is not mistaken for a shape
        grey = rng.uniform(80, 180, (cells, cells, 1))
        tint = rng.uniform(-30, 30, (cells, cells, 3))
        coarse = (grey + tint).astype(np.float32)
        smooth = cv2.resize(coarse, (size, size),
                            interpolation=cv2.INTER_CUBIC)
        fine = rng.normal(0, 12, (size, size, 1)).astype(np.float32)
        return np.clip(smooth + fine, 0, 255).astype(np.uint8), 'noise'
    if kind != 'photo':
        raise ValueError(f'background kind must be one of {BACKGROUND_KINDS},'
                         f' got {kind!r}')
    name = BACKGROUND_PHOTOS[int(rng.integers(len(BACKGROUND_PHOTOS)))]
    photo = load_photo(name)
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (size, size),
                      interpolation=cv2.INTER_AREA)
    # soften the photo a little so the flat shapes stand out
    crop = (crop.astype(np.float32) * 0.75 + 128 * 0.25).astype(np.uint8)
    return crop, f'photo:{name}'


def _sample_specs(rng: np.random.Generator, num: int,
                  compositional: bool) -> List[Tuple[str, str]]:
    """(colour, shape) of each object; repeats colours/shapes often so that
    spatial, relational and ordinal expressions are needed."""
    heldout = set(HELDOUT_PAIRS)
    allowed = [(c, s) for c in COLOUR_NAMES for s in SHAPE_NAMES
               if (c, s) not in heldout]
    specs: List[Tuple[str, str]] = []
    for _ in range(num):
        pair = None
        if specs and rng.random() < 0.55:
            base = specs[int(rng.integers(len(specs)))]
            mode = int(rng.integers(3))
            if mode == 0:
                pair = (COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))],
                        base[1])
            elif mode == 1:
                pair = (base[0],
                        SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))])
            else:
                pair = base
            if pair in heldout and not compositional:
                pair = None
        if pair is None:
            pair = allowed[int(rng.integers(len(allowed)))]
        specs.append(pair)
    if compositional:
        # one or two held-out objects at random drawing positions
        for _ in range(1 + int(rng.random() < 0.35)):
            pos = int(rng.integers(num))
            specs[pos] = HELDOUT_PAIRS[int(rng.integers(len(HELDOUT_PAIRS)))]
        # a held-out object is often accompanied by a same-shape or
        # same-colour distractor
    return specs


def sample_scene(rng: np.random.Generator,
                 image_size: int = 256,
                 compositional: bool = False,
                 num_objects: Optional[int] = None,
                 background: Optional[str] = None,
                 max_tries: int = 40) -> Scene:
    """Sample and render one scene.

    Args:
        rng: random generator (the only source of randomness).
        image_size: side of the square image in pixels.
        compositional: if False, no held-out (colour, shape) pair is drawn;
            if True, at least one held-out pair is drawn (testB).
        num_objects: number of shapes to try to place (default 2-6).
        background: 'plain' | 'noise' | 'photo' | None (random).
        max_tries: placement attempts per shape.

    Returns:
        Scene with at least 2 objects (and, if compositional, at least one
        held-out object).
    """
    if image_size < 32:
        raise ValueError(f'image_size must be >= 32, got {image_size}')
    size = int(image_size)
    while True:
        n = int(rng.integers(2, 7)) if num_objects is None else num_objects
        specs = _sample_specs(rng, n, compositional)
        objects: List[SceneObject] = []
        visible: List[np.ndarray] = []
        for colour, shape in specs:
            size_cls = SIZES[int(rng.integers(2))]
            lo, hi = SIZE_RANGES[size_cls]
            thickness = (THICKNESSES[int(rng.integers(2))]
                         if shape in THICKNESS_SHAPES else None)
            for _ in range(max_tries):
                radius = float(rng.uniform(lo, hi) * size)
                if objects and rng.random() < 0.35:
                    # deliberately overlap an earlier shape
                    other = objects[int(rng.integers(len(objects)))]
                    dist = (other.radius + radius) * rng.uniform(0.45, 0.95)
                    theta = rng.uniform(0, 2 * np.pi)
                    cx = other.cx + dist * np.cos(theta)
                    cy = other.cy + dist * np.sin(theta)
                else:
                    cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
                cx, cy = float(cx), float(cy)
                angle = float(rng.uniform(-0.25, 0.25)) if shape in (
                    'square', 'triangle', 'cross') else float(
                        rng.uniform(0, 2 * np.pi))
                if not (radius + 1 <= cx <= size - radius - 1
                        and radius + 1 <= cy <= size - radius - 1):
                    continue
                if any(o.colour == colour and np.hypot(o.cx - cx, o.cy - cy)
                       < o.radius + radius + 3 for o in objects):
                    continue  # same-colour shapes would merge visually
                geom = shape_geometry(shape, cx, cy, radius, angle, thickness,
                                      rng)
                mask = rasterize(geom, size, size)
                area = int(mask.sum())
                if area == 0:
                    continue
                ok = all(int((v & ~mask).sum())
                         >= MIN_VISIBLE_FRACTION * o.full_area
                         for o, v in zip(objects, visible))
                if not ok:
                    continue
                visible = [v & ~mask for v in visible]
                objects.append(
                    SceneObject(len(objects), shape, colour, size_cls,
                                thickness, cx, cy, radius, geom, mask,
                                full_area=area))
                visible.append(mask.copy())
                break
        if len(objects) < 2:
            continue
        if compositional and not any(o.pair in set(HELDOUT_PAIRS)
                                     for o in objects):
            continue
        break
    image, bg_name = sample_background(rng, size, background)
    for obj, vis in zip(objects, visible):
        obj.visible_mask = vis
        obj.visible_area = int(vis.sum())
        jitter = rng.integers(-10, 11, 3)
        colour = np.clip(np.array(COLOURS[obj.colour]) + jitter, 0, 255)
        image[obj.full_mask] = colour.astype(np.uint8)
    num = len(objects)
    cover = np.zeros((num, num), dtype=np.float64)
    for i in range(num):
        for j in range(i + 1, num):
            inter = int((objects[i].full_mask & objects[j].full_mask).sum())
            cover[i, j] = inter / objects[i].full_area
    return Scene(image=image, objects=objects, background=bg_name,
                 cover=cover)


def referable(scene: Scene, obj: SceneObject,
              min_area_fraction: float = 0.002) -> bool:
    """Whether a shape shows enough pixels to be a referring target."""
    min_area = max(20, min_area_fraction * scene.height * scene.width)
    return (obj.visible_area >= min_area
            and obj.visible_area >= MIN_VISIBLE_FRACTION * obj.full_area)
