"""Which images and expressions a training set shares with evaluation
splits.

RefCOCO, RefCOCO+ and RefCOCOg all annotate COCO train2014 images, and
their partitions were drawn independently: an image of RefCOCO's val or
test split can be a training image of RefCOCOg (either partition) or of
RefCOCO+'s other splits. Training on a mixture therefore has to drop the
evaluation images from every training set
(:class:`~sera_mm.datasets.MixedReferDataset` does), and a mixture built
by hand can be checked with ``tools/dataset_converters/check_leakage.py``.

A *split spec* names one or more splits of one dataset, as a dict:

- REFER layout (``ReferDataset``, ``GReferDataset``,
  ``SyntheticReferDataset`` configs): ``data_root``, ``split_by``,
  ``split`` (one) or ``splits`` (several), optional ``refs_file``,
  ``ann_file`` (``instances.json``), ``dataset_name``;
- CRIS layout (``type='CRISReferDataset'``): ``data_root``, ``dataset``,
  ``split`` / ``splits``, optional ``ann_dir`` (``anns``).

A dataset config is a valid spec: keys a spec does not use (``pipeline``,
``data_prefix``, ``test_mode``, ...) are ignored, and ``name`` names the
split in reports (default ``<dataset_name>/<split>``, e.g.
``refcoco_unc/val``).

Records read from a split are plain dicts: ``image_id``, ``file_name``
(the image file's base name; only read when asked for, REFER needs
instances.json for it), ``ref_id``, ``ann_id`` (None for CRIS data; a
tuple for generalised refs), ``box`` (the object's box as CRIS stores it,
integer ``[x1, y1, x2, y2]``; only read when asked for) and ``sentences``
(the raw expressions).
"""
import os.path as osp
import re
import unicodedata
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .cris_dataset import (CRIS_DATASETS, cris_image_id, read_cris_split)
from .refer_dataset import SPLITS, default_refs_file, read_json, \
    read_refs_file

#: How records are matched to images: the COCO image id, or the image
#: file's base name (for datasets whose ids are local to each file).
MATCH_BY = ('image_id', 'file_name')

_NON_WORD = re.compile(r'[^0-9a-z]+')


def normalise_sentence(text: str) -> str:
    """The form expressions are compared in: Unicode NFKC, lower case,
    every run of characters other than letters and digits turned into one
    space, stripped (``'The  man, LEFT!'`` -> ``'the man left'``)."""
    text = unicodedata.normalize('NFKC', str(text)).lower()
    return _NON_WORD.sub(' ', text).strip()


def is_cris_spec(spec: dict) -> bool:
    """Whether a spec names CRIS-prepared data (its type, or a
    ``dataset`` name without ``split_by``)."""
    return 'CRIS' in str(spec.get('type', '')) or (
        isinstance(spec.get('dataset'), str) and 'split_by' not in spec)


def _refer_defaults(spec: dict) -> Tuple[str, str, str]:
    """(data_root, split_by, refs_file) of a REFER-layout spec."""
    type_name = str(spec.get('type', ''))
    if 'data_root' not in spec:
        raise ValueError(f'split spec {spec!r}: no "data_root"; expected '
                         'dict(data_root=..., split_by=..., split=...)')
    data_root = spec['data_root']
    split_by = spec.get('split_by',
                        'synthetic' if 'Synthetic' in type_name else 'unc')
    refs_file = spec.get('refs_file')
    if refs_file is None:
        if 'GRefer' in type_name:
            from .grefer_dataset import GReferDataset
            refs_file = GReferDataset.default_refs_file(data_root, split_by)
        else:
            refs_file = default_refs_file(data_root, split_by)
    return data_root, split_by, refs_file


def spec_dataset_name(spec: dict) -> str:
    """How reports name the dataset of a spec: its ``dataset_name``, else
    ``<basename of data_root>_<split_by>`` (REFER) or the CRIS dataset
    spelt as the REFER one (``refcocog_u`` -> ``refcocog_umd``)."""
    if spec.get('dataset_name'):
        return str(spec['dataset_name'])
    if is_cris_spec(spec):
        dataset = spec.get('dataset', 'refcoco')
        split_by = CRIS_DATASETS.get(dataset, 'custom')
        return dict(refcocog_u='refcocog_umd',
                    refcocog_g='refcocog_google').get(
                        dataset, f'{dataset}_{split_by}'
                        if split_by == 'unc' else dataset)
    data_root, split_by, _ = _refer_defaults(spec)
    return f'{osp.basename(osp.normpath(data_root)) or "refer"}_{split_by}'


def spec_partition_splits(spec: dict) -> Sequence[str]:
    """Every split of the spec's partition (``SPLITS[split_by]``; for CRIS
    data the partition of its dataset, or the split files present under
    ``anns/<dataset>/`` for a dataset of your own)."""
    if is_cris_spec(spec):
        dataset = spec.get('dataset', 'refcoco')
        if dataset in CRIS_DATASETS:
            return SPLITS[CRIS_DATASETS[dataset]]
        folder = osp.join(spec.get('data_root', 'datasets'),
                          spec.get('ann_dir', 'anns'), dataset)
        if osp.isdir(folder):
            import os
            return sorted(osp.splitext(f)[0] for f in os.listdir(folder)
                          if f.endswith('.json'))
        return SPLITS['custom']
    _, split_by, _ = _refer_defaults(spec)
    if split_by not in SPLITS:
        raise ValueError(f'split spec {spec!r}: unknown split_by '
                         f'{split_by!r}; valid: {sorted(SPLITS)}')
    return SPLITS[split_by]


def expand_specs(specs: Iterable[dict]) -> List[dict]:
    """One spec per split: ``splits=[a, b]`` becomes two specs with
    ``split=a`` and ``split=b``, each with its ``name`` (given ``name`` is
    kept only for single-split specs; several splits are named
    ``<name or dataset_name>/<split>``)."""
    out = []
    for spec in specs:
        if not isinstance(spec, dict):
            raise TypeError(f'a split spec must be a dict (a dataset config '
                            f'or dict(data_root, split_by, split(s))), got '
                            f'{type(spec).__name__}: {spec!r}')
        spec = dict(spec)
        splits = spec.pop('splits', None)
        if splits is None:
            if 'split' not in spec:
                raise ValueError(f'split spec {spec!r}: give "split" or '
                                 '"splits"')
            splits = [spec['split']]
        elif isinstance(splits, str):
            splits = [splits]
        name = spec.pop('name', None)
        for split in splits:
            one = dict(spec, split=split)
            if name and len(splits) == 1:
                one['name'] = name
            else:
                one['name'] = f'{name or spec_dataset_name(spec)}/{split}'
            out.append(one)
    return out


class SourceCache:
    """Refs, CRIS split files and instances read once per path."""

    def __init__(self) -> None:
        self.refs: Dict[str, List[dict]] = {}
        self.cris: Dict[str, List[dict]] = {}
        self.instances: Dict[str, Tuple[dict, dict]] = {}

    def refs_file(self, path: str) -> List[dict]:
        if path not in self.refs:
            self.refs[path] = read_refs_file(path)
        return self.refs[path]

    def cris_file(self, path: str) -> List[dict]:
        if path not in self.cris:
            self.cris[path] = read_cris_split(path)
        return self.cris[path]

    def coco(self, path: str) -> Tuple[dict, dict]:
        """({image_id: file_name}, {ann_id: bbox}) of an instances file."""
        if path not in self.instances:
            if not osp.isfile(path):
                raise FileNotFoundError(f'instances file not found: {path} '
                                        '(needed to match images by file '
                                        'name or objects by box)')
            coco = read_json(path, 'a COCO instances file')
            images = {img['id']: img.get('file_name')
                      for img in coco.get('images', [])}
            anns = {ann['id']: ann.get('bbox')
                    for ann in coco.get('annotations', [])}
            self.instances[path] = (images, anns)
        return self.instances[path]


def _cris_int_box(bbox: Any) -> Optional[Tuple[int, int, int, int]]:
    """A COCO ``[x, y, w, h]`` rounded as CRIS rounds it."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
        return None
    x, y, w, h = (int(v) for v in bbox)
    return (x, y, x + w, y + h)


def read_split(spec: dict, cache: Optional[SourceCache] = None,
               file_names: bool = False,
               boxes: bool = False) -> List[dict]:
    """The records of one split (``spec['split']``; see the module
    docstring). ``file_names`` / ``boxes``: also read each image's file
    name / each object's box (REFER data reads instances.json for them).

    Raises:
        FileNotFoundError: a missing refs, split or instances file.
        ValueError: a malformed file, or a spec without what it needs.
    """
    cache = cache or SourceCache()
    split = spec.get('split')
    if split is None:
        raise ValueError(f'split spec {spec!r}: no "split"')
    records = []
    if is_cris_spec(spec):
        root = spec.get('data_root', 'datasets')
        path = osp.join(root, spec.get('ann_dir', 'anns'),
                        spec.get('dataset', 'refcoco'), f'{split}.json')
        for ref in cache.cris_file(path):
            box = ref.get('bbox')
            records.append(dict(
                image_id=cris_image_id(ref['img_name']),
                file_name=osp.basename(ref['img_name']),
                ref_id=ref['segment_id'], ann_id=None,
                box=tuple(int(v) for v in box)
                if isinstance(box, (list, tuple)) and len(box) == 4 else None,
                sentences=[s.get('sent', s.get('raw', ''))
                           for s in ref['sentences']
                           if isinstance(s, dict)]))
        return records
    data_root, _, refs_file = _refer_defaults(spec)
    refs = cache.refs_file(osp.join(data_root, refs_file))
    images, anns = {}, {}
    if file_names or boxes:
        ann_file = spec.get('ann_file', 'instances.json')
        images, anns = cache.coco(osp.join(data_root, ann_file))
    for ref in refs:
        if not isinstance(ref, dict) or ref.get('split') != split:
            continue
        ann_id = ref.get('ann_id')
        if isinstance(ann_id, list):
            ann_id = tuple(ann_id)
        box = None
        if boxes and not isinstance(ann_id, tuple):
            box = _cris_int_box(anns.get(ann_id))
        file_name = images.get(ref.get('image_id'))
        records.append(dict(
            image_id=ref.get('image_id'),
            file_name=osp.basename(file_name) if file_name else None,
            ref_id=ref.get('ref_id'), ann_id=ann_id, box=box,
            sentences=[s.get('sent', s.get('raw', ''))
                       for s in ref.get('sentences') or []
                       if isinstance(s, dict)]))
    return records


def image_key(record: dict, by: str) -> Any:
    if by not in MATCH_BY:
        raise ValueError(f'match_by must be one of {MATCH_BY}, got {by!r}')
    return record['file_name'] if by == 'file_name' else record['image_id']


def image_keys(records: Iterable[dict], by: str = 'image_id') -> set:
    """The set of image keys (``image_id`` or ``file_name``) of records."""
    return {image_key(r, by) for r in records}


def overlap(train: List[dict], evaluation: List[dict],
            by: str = 'image_id', examples: int = 10) -> 'OrderedDict':
    """What ``train`` shares with ``evaluation``.

    Returns:
        ``images`` (shared images), ``refs`` and ``expressions`` (of
        ``train`` on those images), ``identical`` (training expressions
        that also describe the same object in ``evaluation``: same image,
        same object, same :func:`normalise_sentence`; the object is the
        ``ann_id`` when both sides have one, else the CRIS box), and up to
        ``examples`` ``example_images`` / ``example_identical``.
    """
    eval_images = image_keys(evaluation, by)
    shared, refs, exprs = set(), 0, 0
    for rec in train:
        key = image_key(rec, by)
        if key in eval_images:
            shared.add(key)
            refs += 1
            exprs += len(rec['sentences'])
    use_ann = all(r['ann_id'] is not None for r in train) and all(
        r['ann_id'] is not None for r in evaluation)

    def obj(rec):
        return rec['ann_id'] if use_ann else rec['box']

    eval_objects = set()
    for rec in evaluation:
        if image_key(rec, by) in shared and obj(rec) is not None:
            for sent in rec['sentences']:
                eval_objects.add((image_key(rec, by), obj(rec),
                                  normalise_sentence(sent)))
    identical = []
    for rec in train:
        key = image_key(rec, by)
        if key not in shared or obj(rec) is None:
            continue
        for sent in rec['sentences']:
            if (key, obj(rec), normalise_sentence(sent)) in eval_objects:
                identical.append(dict(image=key, ref_id=rec['ref_id'],
                                      object=obj(rec), sentence=sent))
    out: 'OrderedDict' = OrderedDict()
    out['images'] = len(shared)
    out['refs'] = refs
    out['expressions'] = exprs
    out['identical'] = len(identical)
    out['object_key'] = 'ann_id' if use_ann else 'box'
    out['example_images'] = sorted(shared, key=str)[:examples]
    out['example_identical'] = identical[:examples]
    return out
