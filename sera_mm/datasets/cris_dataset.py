"""Referring data as CRIS's preparation writes it (also read by ETRIS and
DETRIS), without converting or downloading again.

CRIS's ``tools/data_process.py`` (``--generate_mask``) writes, under one
output folder (``datasets/`` in its instructions)::

    anns/<dataset>/<split>.json     # a JSON list, one object per ref
    masks/<dataset>/<segment_id>.png
    images/train2014/COCO_train2014_*.jpg   # the COCO images

with ``<dataset>`` one of ``refcoco``, ``refcoco+`` (splits train, val,
testA, testB), ``refcocog_u`` (the UMD partition: train, val, test) and
``refcocog_g`` (the Google partition: train, val). Each object of a split
file holds:

- ``segment_id``: the REFER ``ref_id`` (the mask PNG is named after it);
- ``img_name``: the COCO image file name (``COCO_train2014_<12 digits>.jpg``);
- ``bbox``: the ref's box as integer ``[x1, y1, x2, y2]`` (CRIS rounds the
  REFER box ``[x, y, w, h]`` to ``[int(x), int(y), int(x) + int(w),
  int(y) + int(h)]``);
- ``cat``: the COCO category as a 0-based index over the 80 COCO
  categories;
- ``sentences``: ``[{idx, sent_id, sent}]``, and ``sentences_num``.

The mask PNGs are uint8 with 255 on the referred object (any value > 0 is
read as foreground here).
"""
import os.path as osp
import re
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from sera_mm.registry import DATASETS
from .refer_dataset import SPLITS, ReferDataset, read_json

#: The 80 COCO category ids in order: CRIS's ``cat`` indexes this list.
COCO_CATEGORY_IDS = (
    list(range(1, 12)) + list(range(13, 26)) + [27, 28] +
    list(range(31, 45)) + list(range(46, 66)) + [67, 70] +
    list(range(72, 83)) + list(range(84, 91)))
assert len(COCO_CATEGORY_IDS) == 80

#: CRIS's dataset folder names and the REFER partition each one is.
CRIS_DATASETS: Dict[str, str] = {
    'refcoco': 'unc',
    'refcoco+': 'unc',
    'refcocog_u': 'umd',
    'refcocog_g': 'google',
}

_COCO_NAME = re.compile(r'^COCO_(?:train|val)2014_(\d{12})\.\w+$')

CRIS_LAYOUT_EXAMPLE = ('datasets/anns/refcoco/train.json, datasets/masks/'
                       'refcoco/<segment_id>.png, datasets/images/train2014/'
                       "COCO_train2014_*.jpg (data_root='datasets', "
                       "dataset='refcoco')")


def cris_image_id(img_name: str) -> Any:
    """The COCO image id of a COCO file name
    (``COCO_train2014_000000581857.jpg`` -> 581857), so CRIS-prepared data
    and the REFER files name images alike; any other name is returned as
    is."""
    match = _COCO_NAME.match(osp.basename(str(img_name)))
    return int(match.group(1)) if match else str(img_name)


def cris_category_id(cat: Any) -> Any:
    """The COCO category id of CRIS's 0-based ``cat`` (an index over the
    80 COCO categories); a value outside 0-79 is returned as is."""
    if isinstance(cat, int) and not isinstance(cat, bool) and \
            0 <= cat < len(COCO_CATEGORY_IDS):
        return COCO_CATEGORY_IDS[cat]
    return cat


def cris_box_to_xywh(bbox: Any, where: str) -> List[float]:
    """CRIS's ``[x1, y1, x2, y2]`` as a COCO box ``[x, y, w, h]``.

    Raises:
        ValueError: not four numbers with x2 >= x1 and y2 >= y1 (naming
            ``where``).
    """
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool)
        for v in bbox)
    if not ok or bbox[2] < bbox[0] or bbox[3] < bbox[1]:
        raise ValueError(f'{where}: "bbox" {bbox!r}; expected [x1, y1, x2, '
                         'y2] as CRIS writes it (x2 >= x1, y2 >= y1)')
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1, y1, x2 - x1, y2 - y1]


def read_cris_split(path: str) -> List[dict]:
    """Read and check one CRIS split file (``anns/<dataset>/<split>.json``).

    Returns:
        The list of ref objects.

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: not a JSON list, or an entry without ``img_name``,
            ``segment_id`` or a ``sentences`` list (naming the file, the
            entry's index and what was expected).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'CRIS annotation file not found: {path}; expected the layout '
            f'CRIS\'s data preparation writes ({CRIS_LAYOUT_EXAMPLE})')
    refs = read_json(path, 'a JSON list of refs as CRIS\'s data_process.py '
                     'writes it (bbox, cat, segment_id, img_name, '
                     'sentences)')
    if not isinstance(refs, list):
        raise ValueError(f'{path}: expected a JSON list of refs (CRIS '
                         f'format), got {type(refs).__name__}')
    for i, ref in enumerate(refs):
        where = f'{path}[{i}]'
        if not isinstance(ref, dict):
            raise ValueError(f'{where}: expected an object with bbox, cat, '
                             f'segment_id, img_name and sentences, got '
                             f'{type(ref).__name__}')
        for key in ('img_name', 'segment_id', 'sentences'):
            if key not in ref:
                raise ValueError(f'{where}: no "{key}"; expected the keys '
                                 'bbox, cat, segment_id, img_name and '
                                 'sentences (CRIS format)')
        if not isinstance(ref['sentences'], list):
            raise ValueError(f'{where}: "sentences" must be a list of '
                             '{idx, sent_id, sent}, got '
                             f'{type(ref["sentences"]).__name__}')
    return refs


def read_mask_png(path: str, where: str) -> np.ndarray:
    """A mask PNG as an (H, W) bool array (any channel > 0 is foreground).

    Raises:
        FileNotFoundError: missing or not a readable image (naming ``where``).
    """
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED) if osp.isfile(path) \
        else None
    if mask is None:
        raise FileNotFoundError(f'{where}: mask {path} is missing or not a '
                                'readable image; expected a PNG with the '
                                'object > 0 (CRIS writes 255)')
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask > 0


@DATASETS.register_module()
class CRISReferDataset(ReferDataset):
    """Referring expressions prepared for CRIS / ETRIS / DETRIS (per-split
    JSON annotations and one mask PNG per ref; see the module docstring).

    Items are those of :class:`ReferDataset` (one per ref in training with
    ``train_mode='ref'``, else one per sentence), with ``ref_id`` the CRIS
    ``segment_id`` (the REFER ref id), ``ann_id`` None (CRIS keeps no
    annotation id), ``image_id`` the COCO id read from ``img_name``
    (:func:`cris_image_id`; the name itself for other files),
    ``category_id`` the COCO category id (:func:`cris_category_id`),
    ``bbox`` the ref's box as COCO ``[x, y, w, h]`` and ``mask_path``. Each
    fetch reads the item's mask PNG and gives it as ``segmentation`` (an
    RLE) with the mask's ``height`` / ``width``, so the usual pipelines
    (``LoadReferMask`` before or after ``Letterbox``) work unchanged and
    check the mask against the image size.

    Args:
        data_root: the folder holding ``anns/``, ``masks/`` and
            ``images/`` (CRIS's ``datasets``).
        dataset: ``refcoco``, ``refcoco+``, ``refcocog_u``, ``refcocog_g``
            (or the name of your own folder under ``anns/``).
        split: the split file's name (train, val, testA, testB, test).
        ann_dir, mask_dir: the annotation and mask folders under
            ``data_root`` (``anns`` and ``masks``).
        data_prefix: ``dict(img_path=...)``, the image folder relative to
            ``data_root`` (default ``images/train2014``).
        check_masks: check at load time that every mask PNG exists.
        dataset_name: ``metainfo['dataset_name']``; default ``dataset``
            with CRIS's RefCOCOg names spelt as this project's
            (``refcocog_u`` -> ``refcocog_umd``, ``refcocog_g`` ->
            ``refcocog_google``, ``refcoco`` -> ``refcoco_unc``).
        **kwargs: :class:`ReferDataset` arguments (``train_mode``,
            ``skip_empty``, ``check_images``, ``exclude_images``,
            ``exclude_by``, ``pipeline``, ``test_mode``, ...).

    Raises:
        FileNotFoundError: a missing split file, image or mask (named).
        ValueError: a malformed split file or entry (file and index named),
            an empty expression (unless ``skip_empty``), a split without
            refs.
    """

    def __init__(self,
                 data_root: str = 'datasets',
                 dataset: str = 'refcoco',
                 split: str = 'train',
                 ann_dir: str = 'anns',
                 mask_dir: str = 'masks',
                 data_prefix: Optional[dict] = None,
                 check_masks: bool = True,
                 dataset_name: Optional[str] = None,
                 **kwargs) -> None:
        for key in ('split_by', 'refs_file', 'ann_file'):
            if key in kwargs:
                raise TypeError(f'CRISReferDataset: {key!r} is not an '
                                'argument; the split file is anns/<dataset>/'
                                '<split>.json (dataset=, split=)')
        self.dataset = dataset
        self.ann_dir = ann_dir
        self.mask_dir = mask_dir
        self.check_masks = check_masks
        split_by = CRIS_DATASETS.get(dataset, 'custom')
        if split not in SPLITS[split_by]:
            raise ValueError(f'split: unknown {split!r} for CRIS dataset '
                             f'{dataset!r}; valid: {list(SPLITS[split_by])}')
        if dataset_name is None:
            dataset_name = dict(refcocog_u='refcocog_umd',
                                refcocog_g='refcocog_google').get(
                                    dataset, f'{dataset}_{split_by}'
                                    if split_by == 'unc' else dataset)
        super().__init__(
            data_root=data_root,
            split_by=split_by,
            split=split,
            refs_file=osp.join(ann_dir, dataset, f'{split}.json'),
            data_prefix=data_prefix or dict(img_path='images/train2014'),
            dataset_name=dataset_name,
            **kwargs)

    def _layout(self) -> str:
        return (f'expected the layout of CRIS\'s data preparation: '
                f'{osp.join(self.data_root, self.refs_file)}, masks in '
                f'{osp.join(self.data_root, self.mask_dir, self.dataset)} '
                f'and the images under {self.data_prefix.get("img_path", "")}'
                f' (e.g. {CRIS_LAYOUT_EXAMPLE})')

    def load_data_list(self) -> List[dict]:
        path = self._require(osp.join(self.data_root, self.refs_file),
                             'CRIS annotation file')
        refs = read_cris_split(path)
        img_dir = self.data_prefix.get('img_path', '')
        mask_dir = osp.join(self.data_root, self.mask_dir, self.dataset)
        data_list: List[dict] = []
        checked = set()
        for i, ref in enumerate(refs):
            where = f'{path}[{i}] (segment_id {ref["segment_id"]})'
            img_path = osp.join(img_dir, ref['img_name'])
            if self.check_images and img_path not in checked:
                self._require(img_path, f'image of {where}')
                checked.add(img_path)
            mask_path = osp.join(mask_dir, f'{ref["segment_id"]}.png')
            if self.check_masks:
                self._require(mask_path, f'mask of {where}')
            sentences = self._sentences(
                dict(ref_id=ref['segment_id'], sentences=ref['sentences']))
            if not sentences:
                continue
            base = dict(
                img_path=img_path,
                mask_path=mask_path,
                ref_id=ref['segment_id'],
                ann_id=None,
                image_id=cris_image_id(ref['img_name']),
                category_id=cris_category_id(ref.get('cat')),
                seg_fields=[],
                reduce_zero_label=False)
            if 'bbox' in ref:
                base['bbox'] = cris_box_to_xywh(ref['bbox'], where)
            data_list.extend(self._items(base, sentences))
        if not data_list:
            raise ValueError(f'{path} has no refs (split {self.split!r} of '
                             f'CRIS dataset {self.dataset!r})')
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        mask = read_mask_png(info['mask_path'],
                             f'ref_id {info.get("ref_id")}')
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        info['segmentation'] = rle
        info['height'], info['width'] = mask.shape
        return info
