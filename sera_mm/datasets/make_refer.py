"""Turn your own referring data into the REFER layout
:class:`~sera_mm.datasets.ReferDataset` reads
(``tools/dataset_converters/make_refer.py`` is the command line).

Two inputs, one table of rows (CSV with a header, or a JSON list of
objects), one row per expression:

(a) COCO-format instances (``--coco instances.json``, masks as polygons or
    RLE) and rows naming the object by its annotation id:
    ``image, object_id, expression[, split]``;
(b) a folder of images and one mask PNG per object (any value > 0 is the
    object): ``image, mask, expression[, split]``.

Columns (aliases in brackets): ``image`` [``file_name``] (relative to
``--images``; in (a) optional, the annotation names its image),
``object_id`` [``ann_id``], ``mask`` (relative to ``--masks``, default the
rows file's folder), ``expression`` [``sentence``, ``sent``, ``text``],
``split`` (optional), ``category`` (optional, masks only: a name; default
``object``), ``sent_id`` (optional; kept, must be unique). Rows naming the
same object (annotation id or mask file) become one ref with several
expressions.

Output, under ``--out``:

- ``refs(<split_by>).json``: the REFER list of refs (``ref_id, ann_id,
  image_id, split, sentences=[{sent_id, sent, raw, tokens}], sent_ids,
  category_id, file_name``), which ReferDataset reads when there is no
  ``refs(<split_by>).p``;
- ``instances.json``: COCO ``images`` (file names relative to the image
  folder), ``annotations`` (the referred objects; masks become RLE) and
  ``categories``;
- ``images/``: copies of the images with ``copy_images``.

Splits: the ``split`` column when every row has one (each image in one
split only), else assigned per image at random (``seed``) in the
``ratios`` given (default train 0.8 / val 0.1 / test 0.1), every split of
positive ratio getting at least one image.

Rejected, each naming the row (``<rows file> line <n>`` for CSV,
``<rows file>[<i>]`` for JSON) and what was expected: missing images or
mask files, images that are not readable, empty masks (no pixel > 0, or
an annotation decoding to nothing), masks of another size than their
image (and COCO images whose file is of another size than
instances.json says), empty expressions, unknown annotation ids, an
object whose annotation belongs to another image than the row names, one
mask file for two images, an image in two splits, rows without a split
among rows with one, unknown split names, duplicate ``sent_id``; and
duplicate image or annotation ids in the COCO file.
"""
import copy
import csv
import os
import os.path as osp
import random
import shutil
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from sera_mm.utils.file_io import atomic_write_json
from sera_mm.evaluation.boxes import mask_to_box
from .cris_dataset import read_mask_png
from .refer_dataset import SPLITS, check_text, read_json
from .transforms.loading import decode_segmentation

ALIASES: Dict[str, Sequence[str]] = {
    'image': ('image', 'file_name'),
    'object_id': ('object_id', 'ann_id'),
    'mask': ('mask', ),
    'expression': ('expression', 'sentence', 'sent', 'text'),
    'split': ('split', ),
    'category': ('category', ),
    'sent_id': ('sent_id', ),
}
DEFAULT_RATIOS = OrderedDict(train=0.8, val=0.1, test=0.1)
MAX_LISTED = 50


class ConversionError(ValueError):
    """Rows that cannot be converted; ``problems`` lists one message per
    problem, each naming its row."""

    def __init__(self, rows_file: str, problems: List[str]) -> None:
        self.problems = list(problems)
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        text = (f'{rows_file}: {len(problems)} row problem(s), nothing '
                'written:\n' + '\n'.join(f'  - {p}' for p in shown))
        if more:
            text += f'\n  ... and {more} more'
        super().__init__(text)


def _pick(row: dict, key: str) -> Any:
    for name in ALIASES[key]:
        if name in row and row[name] not in (None, ''):
            return row[name]
    return None


def read_rows(path: str) -> List[Tuple[str, dict]]:
    """``[(where, row)]`` of a CSV (with a header) or JSON rows file;
    ``where`` names the row (``rows.csv line 3``, ``rows.json[1]``).

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: not a JSON list of objects, a CSV without header, or
            no expression column.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'rows file not found: {path}; expected a '
                                'CSV (with a header) or a JSON list of rows '
                                '(image, object_id or mask, expression'
                                '[, split])')
    rows: List[Tuple[str, dict]] = []
    if path.lower().endswith('.json'):
        data = read_json(path, 'a JSON list of rows (objects with image, '
                         'object_id or mask, expression[, split])')
        if not isinstance(data, list):
            raise ValueError(f'{path}: expected a JSON list of rows, got '
                             f'{type(data).__name__}')
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise ValueError(f'{path}[{i}]: expected an object with '
                                 'image, object_id or mask, expression'
                                 f'[, split], got {type(row).__name__}')
            rows.append((f'{path}[{i}]', row))
    else:
        with open(path, encoding='utf-8-sig', newline='') as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise ValueError(f'{path}: empty, or no header line; '
                                 'expected a header such as '
                                 '"image,mask,expression,split"')
            for row in reader:
                rows.append((f'{path} line {reader.line_num}', {
                    (k or '').strip(): (v.strip() if isinstance(v, str)
                                        else v) for k, v in row.items()}))
        columns = set(reader.fieldnames or ())
        if not columns & set(ALIASES['expression']):
            raise ValueError(f'{path}: no expression column; expected one '
                             f'of {list(ALIASES["expression"])} in the '
                             f'header, got {sorted(columns)}')
    if not rows:
        raise ValueError(f'{path}: no rows')
    return rows


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image file from its header.

    Raises:
        ValueError: not a readable image.
    """
    from PIL import Image
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as err:  # PIL raises several types
        raise ValueError(f'{path} is not a readable image ({err})') from None
    return height, width


def mask_box(mask: np.ndarray) -> List[float]:
    """COCO box ``[x, y, w, h]`` of the foreground pixels (each pixel a
    unit square; :func:`sera_mm.evaluation.boxes.mask_to_box`)."""
    x1, y1, x2, y2 = mask_to_box(mask)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def mask_rle(mask: np.ndarray) -> dict:
    """A compressed COCO RLE (``counts`` as text, JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    rle['size'] = [int(v) for v in rle['size']]
    return rle


def parse_ratios(items: Sequence[str]) -> 'OrderedDict[str, float]':
    """``['train=0.8', 'val=0.2']`` -> OrderedDict.

    Raises:
        ValueError: naming the malformed item or a sum other than 1.
    """
    out: 'OrderedDict[str, float]' = OrderedDict()
    for item in items:
        name, sep, value = str(item).partition('=')
        try:
            ratio = float(value)
        except ValueError:
            ratio = -1.0
        if not sep or not name or ratio < 0:
            raise ValueError(f'split ratio {item!r}: expected NAME=FRACTION,'
                             ' e.g. train=0.8 val=0.1 test=0.1')
        out[name] = ratio
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f'split ratios {dict(out)} sum to {total:g}; '
                         'expected 1')
    return out


def assign_splits(images: Sequence[Any], ratios: Dict[str, float],
                  seed: int = 0) -> Dict[Any, str]:
    """Each image's split, drawn at random (``seed``) in the ``ratios``;
    every split with a positive ratio gets at least one image and the first
    split (train) the rest.

    Raises:
        ValueError: fewer images than splits of positive ratio.
    """
    names = [n for n, r in ratios.items() if r > 0]
    if len(images) < len(names):
        raise ValueError(f'{len(images)} image(s) cannot fill the splits '
                         f'{names} (at least one image each); give a split '
                         'column or other --split-ratios')
    order = sorted(images, key=str)
    random.Random(seed).shuffle(order)
    counts = OrderedDict()
    for name in names[1:]:
        counts[name] = max(1, int(round(len(order) * ratios[name])))
    while sum(counts.values()) > len(order) - 1:
        biggest = max(counts, key=lambda n: counts[n])
        counts[biggest] -= 1
    out: Dict[Any, str] = {}
    pos = 0
    for name, count in counts.items():
        for img in order[pos:pos + count]:
            out[img] = name
        pos += count
    for img in order[pos:]:
        out[img] = names[0]
    return out


class _Coco:
    """The referred objects' source in mode (a)."""

    def __init__(self, path: str) -> None:
        coco = read_json(path, 'a COCO instances file (images, '
                         'annotations, categories)')
        if not isinstance(coco, dict) or 'images' not in coco or \
                'annotations' not in coco:
            raise ValueError(f'{path}: expected a COCO instances file with '
                             '"images" and "annotations"')
        problems = []
        self.images: Dict[Any, dict] = {}
        for img in coco['images']:
            if img['id'] in self.images:
                problems.append(f'{path}: duplicate image id {img["id"]} '
                                f'({self.images[img["id"]]["file_name"]} '
                                f'and {img["file_name"]}); expected unique '
                                'image ids')
            self.images[img['id']] = img
        self.anns: Dict[Any, dict] = {}
        for ann in coco['annotations']:
            if ann['id'] in self.anns:
                first = self.anns[ann['id']]['image_id']
                problems.append(f'{path}: duplicate annotation id '
                                f'{ann["id"]} (images {first} and '
                                f'{ann["image_id"]}); expected unique '
                                'annotation ids')
            self.anns[ann['id']] = ann
        if problems:
            raise ConversionError(path, problems)
        self.categories = list(coco.get('categories') or [])
        self.by_name: Dict[str, dict] = {}
        for img in self.images.values():
            self.by_name.setdefault(img['file_name'], img)
            self.by_name.setdefault(osp.basename(img['file_name']), img)


def _as_id(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def convert(rows_file: str,
            out_dir: str,
            images_dir: Optional[str] = None,
            coco_file: Optional[str] = None,
            masks_dir: Optional[str] = None,
            split_by: str = 'custom',
            ratios: Optional[Dict[str, float]] = None,
            seed: int = 0,
            copy_images: bool = False,
            overwrite: bool = False) -> dict:
    """Convert ``rows_file`` (see the module docstring) into the REFER
    layout under ``out_dir``.

    Args:
        rows_file: the CSV or JSON rows.
        out_dir: output folder (created).
        images_dir: the folder image paths are relative to (default the
            rows file's folder).
        coco_file: COCO instances for rows with ``object_id``.
        masks_dir: the folder mask paths are relative to (default the rows
            file's folder).
        split_by: the partition name (``refs(<split_by>).json``); split
            names must be splits of it (``custom``: train, val, test,
            testA, testB).
        ratios: split ratios when the rows give no split.
        seed: seed of the split assignment.
        copy_images: copy the images to ``<out_dir>/images``.
        overwrite: replace an existing refs file.

    Returns:
        A summary: ``splits`` ({split: dict(images, refs, expressions)}),
        ``refs_file``, ``instances_file``, ``img_path`` (the image folder
        relative to ``out_dir``, the configs' ``data_prefix.img_path``).

    Raises:
        ConversionError: row problems (every one listed, each naming its
            row); nothing is written.
        FileNotFoundError: a missing rows / COCO file.
        FileExistsError: the refs file exists and not ``overwrite``.
        ValueError: an unknown ``split_by``, bad ratios, too few images.
    """
    if split_by not in SPLITS:
        raise ValueError(f'split_by: unknown {split_by!r}; valid: '
                         f'{sorted(SPLITS)}')
    valid_splits = SPLITS[split_by]
    ratios = OrderedDict(ratios or DEFAULT_RATIOS)
    unknown = [n for n in ratios if n not in valid_splits]
    if unknown:
        raise ValueError(f'split ratios name {unknown}, not splits of '
                         f'{split_by!r}: {list(valid_splits)}')
    rows = read_rows(rows_file)
    base = osp.dirname(osp.abspath(rows_file))
    images_dir = images_dir or base
    masks_dir = masks_dir or base
    coco = None
    if coco_file is not None:
        if not osp.isfile(coco_file):
            raise FileNotFoundError(f'COCO instances file not found: '
                                    f'{coco_file}')
        coco = _Coco(coco_file)
    refs_name = f'refs({split_by}).json'
    refs_path = osp.join(out_dir, refs_name)
    if osp.exists(refs_path) and not overwrite:
        raise FileExistsError(f'{refs_path} exists; pass --overwrite to '
                              'replace it')

    problems: List[str] = []
    sizes: Dict[str, Optional[Tuple[int, int]]] = {}

    def size_of(rel: str, where: str) -> Optional[Tuple[int, int]]:
        path = osp.join(images_dir, rel)
        if rel not in sizes:
            if not osp.isfile(path):
                sizes[rel] = None
                problems.append(f'{where}: image {rel!r} not found at '
                                f'{path}; expected an image file under '
                                f'{images_dir}')
            else:
                try:
                    sizes[rel] = image_size(path)
                except ValueError as err:
                    sizes[rel] = None
                    problems.append(f'{where}: {err}; expected an image '
                                    'file (PNG, JPEG, ...)')
        return sizes[rel]

    objects: 'OrderedDict[Any, dict]' = OrderedDict()
    sent_ids: Dict[Any, str] = {}
    mask_owner: Dict[str, Tuple[str, str]] = {}
    for where, row in rows:
        text = _pick(row, 'expression')
        if not isinstance(text, str) or not text.strip():
            problems.append(f'{where}: empty expression; expected a '
                            'non-empty "expression" (or sentence/sent/text)')
            continue
        try:
            check_text(text, where)
        except ValueError as err:
            problems.append(str(err))
            continue
        text = ' '.join(text.split())
        sid = _pick(row, 'sent_id')
        if sid is not None:
            sid = _as_id(sid)
            if sid in sent_ids:
                problems.append(f'{where}: duplicate sent_id {sid!r} (also '
                                f'{sent_ids[sid]}); expected unique ids')
                continue
            sent_ids[sid] = where
        split = _pick(row, 'split')
        if split is not None and split not in valid_splits:
            problems.append(f'{where}: split {split!r} is not a split of '
                            f'{split_by!r}; expected one of '
                            f'{list(valid_splits)}')
            continue
        image = _pick(row, 'image')
        obj_id = _pick(row, 'object_id')
        mask_rel = _pick(row, 'mask')
        if obj_id is None and mask_rel is None:
            problems.append(f'{where}: no object; expected "object_id" (an '
                            'annotation id of --coco) or "mask" (a mask '
                            'file)')
            continue
        if obj_id is not None and mask_rel is not None:
            problems.append(f'{where}: both object_id and mask; expected '
                            'one of them')
            continue
        if obj_id is not None:
            if coco is None:
                problems.append(f'{where}: object_id {obj_id!r} needs COCO '
                                'instances (--coco instances.json); '
                                'otherwise give a "mask" column')
                continue
            aid = _as_id(obj_id)
            ann = coco.anns.get(aid)
            if ann is None:
                problems.append(f'{where}: object_id {obj_id!r} is not an '
                                f'annotation id of {coco_file}')
                continue
            img = coco.images.get(ann['image_id'])
            if img is None:
                problems.append(f'{where}: annotation {aid} names image id '
                                f'{ann["image_id"]}, which is not in '
                                f'{coco_file}')
                continue
            if image is not None and coco.by_name.get(image) is not img:
                problems.append(f'{where}: object_id {aid} belongs to image '
                                f'{img["file_name"]!r}, not to {image!r}; '
                                'expected the image of the annotation')
                continue
            key = ('ann', aid)
            if key not in objects:
                size = size_of(img['file_name'], where)
                if size is None:
                    continue
                h, w = int(img['height']), int(img['width'])
                if size != (h, w):
                    problems.append(
                        f'{where}: image {img["file_name"]!r} is {size[0]} x '
                        f'{size[1]} (height x width) but {coco_file} says '
                        f'{h} x {w}; expected the same size')
                    continue
                try:
                    mask = decode_segmentation(ann['segmentation'], h, w)
                except (ValueError, KeyError, TypeError) as err:
                    problems.append(f'{where}: annotation {aid}: '
                                    f'segmentation not readable ({err}); '
                                    'expected COCO polygons or RLE')
                    continue
                if not mask.any():
                    problems.append(f'{where}: annotation {aid} is an empty '
                                    'mask; expected at least one object '
                                    'pixel')
                    continue
                objects[key] = dict(
                    image=img['file_name'], image_id=img['id'], ann=ann,
                    size=(h, w), rows=[])
        else:
            if image is None:
                problems.append(f'{where}: no "image"; expected the image '
                                f'file (relative to {images_dir}) the mask '
                                'belongs to')
                continue
            mask_path = osp.normpath(osp.join(masks_dir, mask_rel))
            owner = mask_owner.get(mask_path)
            if owner is not None and owner[0] != image:
                problems.append(f'{where}: mask {mask_rel!r} is given for '
                                f'image {image!r} and for {owner[0]!r} '
                                f'({owner[1]}); expected one mask file per '
                                'object')
                continue
            key = ('mask', mask_path)
            if key not in objects:
                size = size_of(image, where)
                if size is None:
                    continue
                try:
                    mask = read_mask_png(mask_path, where)
                except FileNotFoundError as err:
                    problems.append(str(err).replace(
                        'is missing or not a readable image',
                        f'(row\'s {mask_rel!r}) is missing or not a '
                        'readable image'))
                    continue
                if mask.shape != size:
                    problems.append(
                        f'{where}: mask {mask_rel!r} is {mask.shape[0]} x '
                        f'{mask.shape[1]} (height x width) but image '
                        f'{image!r} is {size[0]} x {size[1]}; expected the '
                        'same size')
                    continue
                if not mask.any():
                    problems.append(f'{where}: mask {mask_rel!r} is empty '
                                    '(no pixel > 0); expected the object\'s '
                                    'pixels > 0')
                    continue
                mask_owner[mask_path] = (image, where)
                img = coco.by_name.get(image) if coco is not None else None
                objects[key] = dict(
                    image=image, image_id=img['id'] if img else None,
                    mask=mask, size=size,
                    category=_pick(row, 'category') or 'object', rows=[])
        objects[key]['rows'].append(dict(where=where, text=text,
                                         sent_id=sid, split=split))
    # splits
    image_split: Dict[str, Tuple[str, str]] = {}
    given = [r for o in objects.values() for r in o['rows']
             if r['split'] is not None]
    all_rows = [r for o in objects.values() for r in o['rows']]
    if given:
        for obj in objects.values():
            for r in obj['rows']:
                if r['split'] is None:
                    problems.append(f'{r["where"]}: no split, while other '
                                    'rows have one; expected a split on '
                                    'every row (or on none)')
                    continue
                seen = image_split.get(obj['image'])
                if seen is not None and seen[0] != r['split']:
                    problems.append(
                        f'{r["where"]}: image {obj["image"]!r} in split '
                        f'{r["split"]!r} but in {seen[0]!r} at {seen[1]}; '
                        'expected each image in one split')
                    continue
                image_split.setdefault(obj['image'], (r['split'],
                                                      r['where']))
    if problems:
        raise ConversionError(rows_file, problems)
    if not all_rows:
        raise ConversionError(rows_file, ['no row to convert'])
    if given:
        split_of = {img: s for img, (s, _) in image_split.items()}
    else:
        split_of = assign_splits(
            list(OrderedDict.fromkeys(o['image'] for o in objects.values())),
            ratios, seed)
    return _write(objects, split_of, out_dir, refs_name, images_dir, coco,
                  split_by, copy_images)


def _write(objects, split_of, out_dir, refs_name, images_dir, coco,
           split_by, copy_images) -> dict:
    images: 'OrderedDict[str, dict]' = OrderedDict()
    annotations: List[dict] = []
    categories: List[dict] = copy.deepcopy(coco.categories) if coco else []
    cat_ids = {c['name']: c['id'] for c in categories if 'name' in c}
    used_image_ids = set(coco.images) if coco else set()
    next_image = max([i for i in used_image_ids if isinstance(i, int)],
                     default=0) + 1
    used_ann_ids = set(coco.anns) if coco else set()
    next_ann = max([i for i in used_ann_ids if isinstance(i, int)],
                   default=0) + 1
    refs = []
    sent_counter = 0
    explicit = {r['sent_id'] for o in objects.values() for r in o['rows']
                if r['sent_id'] is not None}
    stats: 'OrderedDict[str, dict]' = OrderedDict()
    for ref_id, obj in enumerate(objects.values()):
        rel = obj['image']
        if rel not in images:
            image_id = obj['image_id']
            if image_id is None:
                image_id = next_image
                next_image += 1
            images[rel] = dict(id=image_id, file_name=rel,
                               height=obj['size'][0], width=obj['size'][1])
        image_id = images[rel]['id']
        if 'ann' in obj:
            ann = copy.deepcopy(obj['ann'])
            category_id = ann.get('category_id')
        else:
            name = str(obj['category'])
            if name not in cat_ids:
                cat_ids[name] = max(cat_ids.values(), default=0) + 1
                categories.append(dict(id=cat_ids[name], name=name,
                                       supercategory=name))
            category_id = cat_ids[name]
            ann = dict(id=next_ann, image_id=image_id,
                       category_id=category_id,
                       segmentation=mask_rle(obj['mask']),
                       area=float(obj['mask'].sum()),
                       bbox=mask_box(obj['mask']), iscrowd=0)
            next_ann += 1
        annotations.append(ann)
        sentences = []
        for r in obj['rows']:
            sid = r['sent_id']
            if sid is None:
                while sent_counter in explicit:
                    sent_counter += 1
                sid = sent_counter
                sent_counter += 1
            sentences.append(dict(sent_id=sid, sent=r['text'],
                                  raw=r['text'], tokens=r['text'].split()))
        split = split_of[rel]
        refs.append(dict(
            ref_id=ref_id, ann_id=ann['id'], image_id=image_id, split=split,
            sent_ids=[s['sent_id'] for s in sentences],
            sentences=sentences, category_id=category_id, file_name=rel))
        st = stats.setdefault(split, dict(images=set(), refs=0,
                                          expressions=0))
        st['images'].add(rel)
        st['refs'] += 1
        st['expressions'] += len(sentences)
    if not categories:
        categories = [dict(id=1, name='object', supercategory='object')]
    os.makedirs(out_dir, exist_ok=True)
    img_path = osp.relpath(osp.abspath(images_dir), osp.abspath(out_dir))
    if copy_images:
        for rel in images:
            dst = osp.join(out_dir, 'images', rel)
            os.makedirs(osp.dirname(dst), exist_ok=True)
            shutil.copy2(osp.join(images_dir, rel), dst)
        img_path = 'images'
    instances_path = osp.join(out_dir, 'instances.json')
    atomic_write_json(dict(images=list(images.values()),
                           annotations=annotations, categories=categories),
                      instances_path)
    refs_path = osp.join(out_dir, refs_name)
    atomic_write_json(refs, refs_path)
    splits = OrderedDict(
        (name, dict(images=len(st['images']), refs=st['refs'],
                    expressions=st['expressions']))
        for name, st in sorted(stats.items(),
                               key=lambda kv: SPLITS[split_by].index(kv[0])))
    return dict(splits=splits, refs_file=refs_path,
                instances_file=instances_path, img_path=img_path,
                split_by=split_by)


# -- a tiny example -------------------------------------------------------
_COLOURS = OrderedDict(red=(40, 40, 220), green=(40, 180, 40),
                       blue=(220, 60, 40), yellow=(40, 220, 230))


def write_example(out_dir: str, num_images: int = 8, size: int = 64,
                  seed: int = 0) -> dict:
    """A tiny dataset in input form (b): ``images/*.jpg``, one mask PNG per
    object in ``masks/`` and ``expressions.csv`` (``image,mask,expression``
    , no split column), two objects (a square and a disc of different
    colours) per image, two expressions per object.

    Returns:
        ``dict(rows=..., images=..., masks=...)`` (paths).
    """
    import cv2
    rng = random.Random(seed)
    img_dir = osp.join(out_dir, 'images')
    mask_dir = osp.join(out_dir, 'masks')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    rows = [('image', 'mask', 'expression')]
    names = list(_COLOURS)
    for i in range(num_images):
        img = np.full((size, size, 3), 235, np.uint8)
        c1, c2 = rng.sample(names, 2)
        half = size // 2
        x1 = rng.randint(2, half - 20)
        y1 = rng.randint(2, size - 20)
        x2 = rng.randint(half + 8, size - 10)
        y2 = rng.randint(10, size - 10)
        square = np.zeros((size, size), np.uint8)
        square[y1:y1 + 16, x1:x1 + 16] = 255
        disc = np.zeros((size, size), np.uint8)
        cv2.circle(disc, (x2, y2), 8, 255, -1)
        img[square > 0] = _COLOURS[c1]
        img[disc > 0] = _COLOURS[c2]
        stem = f'scene_{i:02d}'
        cv2.imwrite(osp.join(img_dir, f'{stem}.jpg'), img)
        for obj, mask, colour, side in (('square', square, c1, 'left'),
                                        ('disc', disc, c2, 'right')):
            mask_name = f'{stem}_{obj}.png'
            cv2.imwrite(osp.join(mask_dir, mask_name), mask)
            rows.append((f'{stem}.jpg', mask_name, f'the {colour} {obj}'))
            rows.append((f'{stem}.jpg', mask_name, f'the {obj} on the {side}'))
    rows_path = osp.join(out_dir, 'expressions.csv')
    with open(rows_path, 'w', encoding='utf-8', newline='') as f:
        csv.writer(f).writerows(rows)
    return dict(rows=rows_path, images=img_dir, masks=mask_dir)
