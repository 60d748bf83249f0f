"""Generate the synthetic referring benchmark in the public REFER layout,
or its generalised variant in the gRefCOCO layout.

Layout written under ``out_dir``::

    images/synthetic_000001.png ...
    instances.json          # COCO images / annotations / categories
    refs(synthetic).p       # pickled list of refs (protocol 2)
    .complete               # JSON summary, written last

The generalised variant (:func:`generate_synthetic_grefer`) writes
``grefs(synthetic).json`` instead of the pickle: refs whose ``ann_id`` and
``category_id`` are lists (``[-1]`` with ``no_target: true`` when the
expression names nothing), whose sentences carry their structured
``query``, and every image record of ``instances.json`` carries a ``scene``
description (its shapes' attributes, positions, areas and overlaps) from
which every ref's target set can be recomputed.

Splits: ``train``, ``val`` and ``testA`` share one distribution in which
the (colour, shape) pairs of :data:`HELDOUT_PAIRS` never appear; ``testB``
is ``round(num_images * testb_fraction)`` extra images whose every ref
targets a held-out pair (compositional generalisation).

Everything derives from ``seed``: image ``i`` uses
``numpy.random.default_rng([seed, i])`` and files are written with fixed
ordering, so two runs with the same arguments give identical bytes. The
generalised variant draws its extra refs from a second stream
``default_rng([seed, i, 1])``, so its images and single-target refs are
those of the REFER variant with the same arguments (up to
``max_refs_per_image``).
"""
import os
import os.path as osp
import warnings
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .expressions import (EXPR_TYPES, expression_candidates,
                          pick_expressions, tokenize)
from .gexpressions import GREF_TYPES, choose_gref_refs
from .scenes import HELDOUT_PAIRS, Scene, referable, sample_scene
from .shapes import SHAPE_NAMES, encode_rle
from .writer import (GREFS_FILE, IMAGE_DIR, INSTANCES_FILE, MARKER,
                     REFS_FILE, atomic_directory, check_target, dump_json,
                     dump_refs, read_summary)

SPLITS = ('train', 'val', 'testA', 'testB')
FORMAT_VERSION = 1


def split_counts(num_images: int, split_ratios: Sequence[float],
                 testb_fraction: float) -> Dict[str, int]:
    """Number of images per split."""
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    if len(split_ratios) != 3 or any(r < 0 for r in split_ratios):
        raise ValueError('split_ratios must be three non-negative numbers '
                         f'(train, val, testA), got {split_ratios!r}')
    if abs(sum(split_ratios) - 1.0) > 1e-6:
        raise ValueError(f'split_ratios must sum to 1, got {split_ratios!r} '
                         f'(sum {sum(split_ratios)})')
    if testb_fraction < 0:
        raise ValueError(f'testb_fraction must be >= 0, got {testb_fraction}')
    n_val = int(round(num_images * split_ratios[1]))
    n_testa = int(round(num_images * split_ratios[2]))
    n_train = num_images - n_val - n_testa
    return dict(train=n_train, val=n_val, testA=n_testa,
                testB=int(round(num_images * testb_fraction)))


def _bbox(mask: np.ndarray) -> List[float]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1),
            float(ys[-1] - ys[0] + 1)]


def annotation_segmentation(obj) -> object:
    """COCO segmentation of a shape's visible region: polygons when the
    shape is simple and unoccluded, else an RLE dict (counts as str)."""
    if not obj.geometry.has_holes and obj.visible_area == obj.full_area:
        return obj.geometry.coco_polygons()
    return encode_rle(obj.visible_mask)


def _choose_refs(rng: np.random.Generator, scene: Scene, compositional: bool,
                 type_counts: Counter, max_refs: int
                 ) -> List[Tuple[int, str, list]]:
    """(object index, expr_type, expressions) for the referred shapes.

    The type of each ref is the least used so far among those with at least
    two unambiguous expressions for the target, which keeps the mix of
    types balanced."""
    heldout = set(HELDOUT_PAIRS)
    targets = [o for o in scene.objects if referable(scene, o)
               and (not compositional or o.pair in heldout)]
    order = rng.permutation(len(targets))
    out = []
    for i in order:
        obj = targets[int(i)]
        ties = rng.permutation(len(EXPR_TYPES))
        types = sorted(range(len(EXPR_TYPES)),
                       key=lambda t: (type_counts[EXPR_TYPES[t]], ties[t]))
        for t in types:
            expr_type = EXPR_TYPES[t]
            cands = expression_candidates(scene, obj, expr_type)
            if len(cands) >= 2:
                num = 2 + int(rng.random() < 0.5 and len(cands) >= 3)
                exprs = pick_expressions(rng, cands, num)
                type_counts[expr_type] += 1
                out.append((obj.index, expr_type, exprs))
                break
        if len(out) >= max_refs:
            break
    return out


def _check_args(num_images, split_ratios, testb_fraction,
                image_size) -> Dict[str, int]:
    counts = split_counts(num_images, split_ratios, testb_fraction)
    if int(image_size) < 32:
        raise ValueError(f'image_size must be >= 32, got {image_size}')
    return counts


def _reuse(out_dir: str, refs_file: str, wanted: dict) -> dict:
    summary = read_summary(out_dir, refs_file)
    diff = {k: (summary.get(k), v) for k, v in wanted.items()
            if summary.get(k) != v}
    if diff:
        warnings.warn(f'{out_dir!r} already holds a synthetic dataset '
                      f'generated with other arguments {diff} '
                      '(stored, requested); pass overwrite=True to '
                      'regenerate it')
    return summary


def _scene_record(scene: Scene, ann_of: Dict[int, int]) -> dict:
    """JSON description of a scene: what the resolvers read."""
    objects = []
    for o in scene.objects:
        objects.append(dict(
            index=o.index, ann_id=ann_of.get(o.index), shape=o.shape,
            colour=o.colour, size=o.size, thickness=o.thickness,
            cx=o.cx, cy=o.cy, radius=o.radius, full_area=o.full_area,
            visible_area=o.visible_area,
            referable=bool(referable(scene, o))))
    return dict(objects=objects,
                cover=[[float(v) for v in row] for row in scene.cover])


def _query_record(query: dict) -> dict:
    """A query with tuples turned into lists (JSON)."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v
    return {k: plain(v) for k, v in query.items()}


def _generate(out_dir: str, gref: Optional[dict], num_images: int,
              seed: int, image_size: int, split_ratios: Sequence[float],
              testb_fraction: float, progress: bool, overwrite: bool,
              max_refs_per_image: int) -> dict:
    """Both variants: ``gref`` None writes the REFER layout, else the
    gRefCOCO layout with ``gref = dict(multi_prob=, no_target_prob=)``."""
    counts = _check_args(num_images, split_ratios, testb_fraction,
                         image_size)
    refs_file = REFS_FILE if gref is None else GREFS_FILE
    action = check_target(out_dir, overwrite, refs_file)
    if action == 'reuse':
        wanted = dict(num_images=num_images, seed=seed,
                      image_size=image_size)
        if gref is not None:
            wanted.update(gref)
        return _reuse(out_dir, refs_file, wanted)

    from tqdm import tqdm

    types = EXPR_TYPES if gref is None else EXPR_TYPES + GREF_TYPES
    split_of = [s for s in SPLITS for _ in range(counts[s])]
    total = len(split_of)
    images, annotations, refs = [], [], []
    type_counts: Counter = Counter()
    gref_types: Counter = Counter()
    sent_types: Counter = Counter()
    ref_split: Counter = Counter()
    sent_split: Counter = Counter()
    ann_id, ref_id, sent_id = 1, 0, 0
    with atomic_directory(out_dir, refs_file) as tmp:
        img_dir = osp.join(tmp, IMAGE_DIR)
        os.makedirs(img_dir)
        bar = tqdm(total=total, disable=not progress,
                   desc='synthetic refer', unit='img')
        for i, split in enumerate(split_of):
            image_id = i + 1
            rng = np.random.default_rng([int(seed), i])
            compositional = split == 'testB'
            while True:
                scene = sample_scene(rng, image_size, compositional)
                chosen = _choose_refs(rng, scene, compositional, type_counts,
                                      max_refs_per_image)
                if chosen:
                    break
            file_name = f'synthetic_{image_id:06d}.png'
            ok = cv2.imwrite(osp.join(img_dir, file_name),
                             np.ascontiguousarray(scene.image[..., ::-1]))
            if not ok:
                raise OSError(f'could not write {file_name} in {img_dir}')
            image = dict(id=image_id, file_name=file_name,
                         height=scene.height, width=scene.width)
            images.append(image)
            ann_of = {}
            for obj in scene.objects:
                if obj.visible_area == 0:
                    continue
                ann_of[obj.index] = ann_id
                annotations.append(dict(
                    id=ann_id, image_id=image_id,
                    category_id=SHAPE_NAMES.index(obj.shape) + 1,
                    segmentation=annotation_segmentation(obj),
                    area=float(obj.visible_area),
                    bbox=_bbox(obj.visible_mask), iscrowd=0,
                    colour=obj.colour))
                ann_id += 1
            # (expr_type, target indices, expressions) of every ref
            items = [(expr_type, (index, ), exprs)
                     for index, expr_type, exprs in chosen]
            if gref is not None:
                image['scene'] = _scene_record(scene, ann_of)
                items += choose_gref_refs(
                    np.random.default_rng([int(seed), i, 1]), scene,
                    compositional, gref['multi_prob'],
                    gref['no_target_prob'])
            for expr_type, targets, exprs in items:
                sentences = []
                for e in exprs:
                    sent = dict(sent_id=sent_id, sent=e.text, raw=e.text,
                                tokens=tokenize(e.text), expr_type=expr_type)
                    if gref is not None:
                        sent['query'] = _query_record(e.query)
                    sentences.append(sent)
                    sent_id += 1
                    sent_types[expr_type] += 1
                if gref is None:
                    obj = scene.objects[targets[0]]
                    refs.append(dict(
                        ref_id=ref_id, ann_id=ann_of[targets[0]],
                        image_id=image_id, split=split, sentences=sentences,
                        sent_ids=[s['sent_id'] for s in sentences],
                        category_id=SHAPE_NAMES.index(obj.shape) + 1,
                        file_name=file_name, expr_type=expr_type))
                else:
                    if expr_type in GREF_TYPES:
                        gref_types[expr_type] += 1
                    cats = [SHAPE_NAMES.index(scene.objects[t].shape) + 1
                            for t in targets]
                    refs.append(dict(
                        ref_id=ref_id,
                        ann_id=[ann_of[t] for t in targets] or [-1],
                        image_id=image_id, split=split, sentences=sentences,
                        sent_ids=[s['sent_id'] for s in sentences],
                        category_id=cats or [-1], no_target=not targets,
                        file_name=file_name, expr_type=expr_type))
                ref_id += 1
                ref_split[split] += 1
                sent_split[split] += len(sentences)
            bar.update(1)
        bar.close()
        categories = [dict(id=k + 1, name=n, supercategory='shape')
                      for k, n in enumerate(SHAPE_NAMES)]
        description = 'SERA-MM synthetic referring benchmark'
        if gref is not None:
            description += ' (generalised: multi-target and no-target)'
        dump_json(dict(images=images, annotations=annotations,
                       categories=categories,
                       info=dict(description=description,
                                 version=FORMAT_VERSION)),
                  osp.join(tmp, INSTANCES_FILE))
        if gref is None:
            dump_refs(refs, osp.join(tmp, REFS_FILE))
        else:
            dump_json(refs, osp.join(tmp, GREFS_FILE))
        all_types = Counter(type_counts) + gref_types
        summary = dict(
            format_version=FORMAT_VERSION, num_images=num_images, seed=seed,
            image_size=image_size, split_ratios=list(split_ratios),
            testb_fraction=testb_fraction,
            max_refs_per_image=max_refs_per_image,
            heldout_pairs=[list(p) for p in HELDOUT_PAIRS],
            total_images=total, images=dict(counts),
            refs={s: ref_split[s] for s in SPLITS},
            sentences={s: sent_split[s] for s in SPLITS},
            refs_per_type={t: all_types[t] for t in types},
            sentences_per_type={t: sent_types[t] for t in types},
            num_annotations=len(annotations))
        if gref is not None:
            summary.update(variant='gref', **gref)
        dump_json(summary, osp.join(tmp, MARKER))
    return summary


def generate_synthetic_refer(out_dir: str,
                             num_images: int = 2000,
                             seed: int = 0,
                             image_size: int = 256,
                             split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
                             testb_fraction: float = 0.1,
                             progress: bool = True,
                             overwrite: bool = False,
                             max_refs_per_image: int = 3) -> dict:
    """Write the synthetic referring benchmark to ``out_dir``.

    Args:
        out_dir: dataset root to create.
        num_images: images of train + val + testA.
        seed: random seed; same arguments give byte-identical files.
        image_size: side of the square images in pixels (>= 32).
        split_ratios: fractions of ``num_images`` for train, val, testA.
        testb_fraction: testB images as a fraction of ``num_images``
            (extra images, held-out colour-shape pairs as targets).
        progress: show a tqdm progress bar.
        overwrite: replace an existing complete dataset.
        max_refs_per_image: most referred shapes per image.

    Returns:
        Summary dict: arguments, images/refs/sentences per split, sentences
        and refs per expression type (also stored in ``out_dir/.complete``).

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty and was not
            written by this generator.
    """
    return _generate(out_dir, None, num_images, seed, image_size,
                     split_ratios, testb_fraction, progress, overwrite,
                     max_refs_per_image)


def generate_synthetic_grefer(out_dir: str,
                              num_images: int = 2000,
                              seed: int = 0,
                              image_size: int = 256,
                              split_ratios: Sequence[float] = (0.8, 0.1,
                                                               0.1),
                              testb_fraction: float = 0.1,
                              progress: bool = True,
                              overwrite: bool = False,
                              max_refs_per_image: int = 2,
                              multi_prob: float = 0.7,
                              no_target_prob: float = 0.5) -> dict:
    """Write the generalised synthetic benchmark (gRefCOCO layout) to
    ``out_dir``: the single-target refs of :func:`generate_synthetic_refer`
    plus, per image, a multi-target ref (``expr_type='multi'``, probability
    ``multi_prob``) and a no-target ref (``expr_type='no_target'``,
    probability ``no_target_prob``) when the scene allows one (see
    :mod:`sera_mm.datasets.synthetic.gexpressions`). In testB every
    multi-target set holds a held-out colour-shape pair.

    Args:
        out_dir, num_images, seed, image_size, split_ratios,
        testb_fraction, progress, overwrite, max_refs_per_image: as for
            :func:`generate_synthetic_refer` (``max_refs_per_image``
            counts single-target refs only).
        multi_prob: probability of a multi-target ref per image.
        no_target_prob: probability of a no-target ref per image.

    Returns:
        Summary dict as :func:`generate_synthetic_refer`'s, with
        ``variant='gref'``, the two probabilities and the new types in
        ``refs_per_type`` / ``sentences_per_type``.
    """
    for name, value in (('multi_prob', multi_prob),
                        ('no_target_prob', no_target_prob)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f'{name} must be in [0, 1], got {value}')
    gref = dict(multi_prob=float(multi_prob),
                no_target_prob=float(no_target_prob))
    return _generate(out_dir, gref, num_images, seed, image_size,
                     split_ratios, testb_fraction, progress, overwrite,
                     max_refs_per_image)
