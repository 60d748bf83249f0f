"""Check a REFER-format dataset against its published size.

    python tools/dataset_converters/check_refer.py DATA_ROOT \
        --dataset refcoco --split-by unc [--img-folder ../coco/train2014] \
        [--masks all|none|N] [--out report.json]

Loads every split of ``DATA_ROOT/refs(<split_by>).p`` + ``instances.json``
with SERA-MM's loader (the same code training uses), counts images, refs
and expressions per split, compares them with the published counts below,
and reports images that are missing under ``--img-folder`` (relative to
DATA_ROOT, as in the configs) and masks that do not decode, each with its
ids. Exit status 0 when everything matches and nothing is missing, 1
otherwise.

Published counts (per split; ``None``: not checked):

- RefCOCO / RefCOCO+ (UNC partition; Yu et al., "Modeling Context in
  Referring Expressions", ECCV 2016): expressions per split as the REFER
  release gives them (RefCOCO 120,624 / 10,834 / 5,657 / 5,095, whose sum
  142,210 differs by one from the paper's total of 142,209; RefCOCO+
  120,191 / 10,758 / 5,726 / 4,889); refs per split as CRIS's and
  DETRIS's data preparation count them (``utils/dataset.py``); images 16,994
  / 1,500 / 750 / 750 (RefCOCO) and 16,992 / 1,500 / 750 / 750 (RefCOCO+).
- RefCOCOg UMD partition (Nagaraja et al., ECCV 2016): expressions 80,512 /
  4,896 / 9,602; refs 42,226 / 2,573 / 5,023.
- RefCOCOg Google partition (Mao et al., CVPR 2016): refs 44,822 / 5,000
  (expressions and images not checked).
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

# (images, refs, expressions) per split; None where not checked
PUBLISHED: Dict[str, Dict[str, Dict[str, Optional[int]]]] = {
    'refcoco_unc': {
        'train': dict(images=16994, refs=42404, expressions=120624),
        'val': dict(images=1500, refs=3811, expressions=10834),
        'testA': dict(images=750, refs=1975, expressions=5657),
        'testB': dict(images=750, refs=1810, expressions=5095),
    },
    'refcoco+_unc': {
        'train': dict(images=16992, refs=42278, expressions=120191),
        'val': dict(images=1500, refs=3805, expressions=10758),
        'testA': dict(images=750, refs=1975, expressions=5726),
        'testB': dict(images=750, refs=1798, expressions=4889),
    },
    'refcocog_umd': {
        'train': dict(images=None, refs=42226, expressions=80512),
        'val': dict(images=None, refs=2573, expressions=4896),
        'test': dict(images=None, refs=5023, expressions=9602),
    },
    'refcocog_google': {
        'train': dict(images=None, refs=44822, expressions=None),
        'val': dict(images=None, refs=5000, expressions=None),
    },
}
DATASETS = ('refcoco', 'refcoco+', 'refcocog', 'custom')
SPLIT_BYS = ('unc', 'umd', 'google', 'synthetic')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count images, refs and expressions of a REFER-format '
        'dataset per split, compare with the published counts and report '
        'missing images and undecodable masks')
    parser.add_argument('data_root', help='folder with refs(<split_by>).p '
                        'and instances.json')
    parser.add_argument('--dataset', choices=DATASETS, default='refcoco',
                        help='which published counts to compare with '
                        '("custom": none)')
    parser.add_argument('--split-by', choices=SPLIT_BYS, default='unc')
    parser.add_argument('--img-folder', default='../coco/train2014',
                        help='image folder relative to DATA_ROOT (default: '
                        'the configs\' ../coco/train2014)')
    parser.add_argument('--masks', default='all',
                        help="decode 'all' masks, 'none', or the first N "
                        'of every split')
    parser.add_argument('--out', help='also write the report as JSON here')
    return parser.parse_args(argv)


def _mask_limit(value: str) -> Optional[int]:
    if value == 'all':
        return None
    if value == 'none':
        return 0
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"--masks must be 'all', 'none' or a count >= 0, "
                         f'got {value!r}')
    return n


def check_split(data_root: str, split_by: str, split: str, img_folder: str,
                mask_limit: Optional[int]) -> dict:
    """Counts and problems of one split (see the module docstring)."""
    from sera_mm.datasets import ReferDataset
    from sera_mm.datasets.transforms.loading import decode_segmentation
    ds = ReferDataset(data_root=data_root, split_by=split_by, split=split,
                      data_prefix=dict(img_path=img_folder), test_mode=True,
                      check_images=False, skip_empty=True,
                      serialize_data=False)
    items = [ds.get_data_info(i) for i in range(len(ds))]
    images = OrderedDict()
    refs = OrderedDict()
    for item in items:
        images.setdefault(item['image_id'], item['img_path'])
        refs.setdefault(item['ref_id'], item)
    missing = [dict(image_id=i, path=p) for i, p in images.items()
               if not osp.isfile(p)]
    bad_masks = []
    checked = 0
    for ref_id, item in refs.items():
        if mask_limit is not None and checked >= mask_limit:
            break
        checked += 1
        try:
            mask = decode_segmentation(item['segmentation'], item['height'],
                                       item['width'])
            if mask.shape != (item['height'], item['width']):
                raise ValueError(f'decoded shape {mask.shape} is not the '
                                 f'image size')
            if not mask.any():
                raise ValueError('empty mask')
        except Exception as err:  # noqa: BLE001 (reported with its ids)
            bad_masks.append(dict(ref_id=ref_id, ann_id=item.get('ann_id'),
                                  image_id=item['image_id'],
                                  error=f'{type(err).__name__}: {err}'))
    return dict(images=len(images), refs=len(refs), expressions=len(items),
                missing_images=missing, bad_masks=bad_masks,
                masks_checked=checked)


def check_dataset(data_root: str, dataset: str, split_by: str,
                  img_folder: str, masks: str = 'all') -> dict:
    """The report of every split of ``split_by``; ``ok`` is True when the
    counts match the published ones and nothing is missing."""
    from sera_mm.datasets.refer_dataset import SPLITS
    limit = _mask_limit(masks)
    published = PUBLISHED.get(f'{dataset}_{split_by}', {})
    report = dict(data_root=osp.abspath(data_root), dataset=dataset,
                  split_by=split_by, splits={}, ok=True)
    for split in SPLITS[split_by]:
        try:
            result = check_split(data_root, split_by, split, img_folder,
                                 limit)
        except ValueError as err:
            if 'has no refs' not in str(err):
                raise
            result = dict(images=0, refs=0, expressions=0,
                          missing_images=[], bad_masks=[], masks_checked=0)
        expected = published.get(split, {})
        result['published'] = expected
        result['differs'] = {
            k: dict(found=result[k], published=v)
            for k, v in expected.items()
            if v is not None and result[k] != v
        }
        if result['differs'] or result['missing_images'] or \
                result['bad_masks']:
            report['ok'] = False
        report['splits'][split] = result
    return report


def format_report(report: dict) -> List[str]:
    lines = [f'{report["dataset"]} ({report["split_by"]}) in '
             f'{report["data_root"]}',
             '| split | images | refs | expressions | missing images | '
             'bad masks |', '|---|---|---|---|---|---|']
    for split, r in report['splits'].items():
        cells = []
        for key in ('images', 'refs', 'expressions'):
            pub = r['published'].get(key)
            mark = '' if pub is None or pub == r[key] else f' (published {pub:,})'
            cells.append(f'{r[key]:,}{mark}')
        lines.append(f'| {split} | ' + ' | '.join(cells) +
                     f' | {len(r["missing_images"])} | '
                     f'{len(r["bad_masks"])} of {r["masks_checked"]} |')
    for split, r in report['splits'].items():
        for m in r['missing_images'][:20]:
            lines.append(f'{split}: missing image {m["path"]} '
                         f'(image_id {m["image_id"]})')
        for b in r['bad_masks'][:20]:
            lines.append(f'{split}: mask of ref_id {b["ref_id"]} (ann_id '
                         f'{b["ann_id"]}, image_id {b["image_id"]}) does '
                         f'not decode: {b["error"]}')
    lines.append('OK: matches the published counts' if report['ok'] else
                 'NOT OK: see the differences above')
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    from sera_mm.utils import setup_runtime
    setup_runtime()  # before sera_mm.datasets imports mmseg
    try:
        report = check_dataset(args.data_root, args.dataset, args.split_by,
                               args.img_folder, args.masks)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print('\n'.join(format_report(report)))
    if args.out:
        from sera_mm.utils.file_io import atomic_write_json
        atomic_write_json(report, args.out)
    return 0 if report['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
