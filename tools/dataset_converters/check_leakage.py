"""Report what training sets share with evaluation splits.

RefCOCO, RefCOCO+ and RefCOCOg annotate the same COCO images with
independently drawn partitions, so a mixture of their training sets can
hold images (and even the very expressions) of another dataset's val or
test split. For every training set and every evaluation split this tool
counts:

- shared images (by COCO image id, or ``--match-by file_name``), and the
  training refs and expressions on them;
- identical expressions on the same object: same image, same object (the
  annotation id when both sides have one, else the box as CRIS stores it)
  and the same normalised sentence (lower case, punctuation and repeated
  spaces removed).

Examples::

    python tools/dataset_converters/check_leakage.py \\
        --train data/refcoco:unc:train data/refcocog:umd:train \\
        --eval data/refcoco:unc:val,testA,testB data/refcocog:umd:val,test
    python tools/dataset_converters/check_leakage.py \\
        --train cris:datasets:refcocog_g:train \\
        --eval cris:datasets:refcoco:val,testA,testB
    python tools/dataset_converters/check_leakage.py \\
        --config configs/sera/sera_vitb_refcoco-mixed.py --json leak.json

A split spec is ``DATA_ROOT:SPLIT_BY:SPLIT[,SPLIT...]`` for the REFER
layout (``refs(<split_by>).p`` or ``.json`` plus ``instances.json``) or
``cris:DATA_ROOT:DATASET:SPLIT[,SPLIT...]`` for data prepared by CRIS's
``data_process.py`` (``anns/<dataset>/<split>.json``). ``--config`` reads
the training sets (the datasets of a ``MixedReferDataset``) and the
evaluation splits (val and test dataloaders, and a ``MixedReferDataset``'s
``exclude``) from a config; ``MixedReferDataset`` removes the shared images
when it loads, so for such a config the report says what it will remove.

Exit status: 0; with ``--fail-on-leak``, 1 when any image is shared.
"""
import argparse
import json
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, List, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_spec(text: str) -> dict:
    """``DATA_ROOT:SPLIT_BY:SPLITS`` or ``cris:DATA_ROOT:DATASET:SPLITS``
    -> a split spec (see :mod:`sera_mm.datasets.leakage`).

    Raises:
        ValueError: naming the spec and the expected forms.
    """
    expected = ('expected DATA_ROOT:SPLIT_BY:SPLIT[,SPLIT...] (REFER layout,'
                ' e.g. data/refcoco:unc:val,testA) or cris:DATA_ROOT:DATASET:'
                'SPLIT[,SPLIT...] (CRIS layout, e.g. cris:datasets:refcoco:'
                'val)')
    cris = text.startswith('cris:')
    body = text[len('cris:'):] if cris else text
    parts = body.rsplit(':', 2)
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ValueError(f'split spec {text!r}: {expected}')
    root, which, splits = parts
    splits = [s for s in splits.split(',') if s]
    if cris:
        return dict(type='CRISReferDataset', data_root=root, dataset=which,
                    splits=splits)
    return dict(type='ReferDataset', data_root=root, split_by=which,
                splits=splits)


def _datasets_of(cfg) -> List[dict]:
    """The leaf dataset configs of a dataset config (through
    MixedReferDataset / ConcatReferDataset / ConcatDataset ``datasets``
    and wrappers' ``dataset``)."""
    if cfg is None:
        return []
    if 'datasets' in cfg:
        out = []
        for sub in cfg['datasets']:
            out.extend(_datasets_of(sub))
        return out
    if isinstance(cfg.get('dataset'), dict):
        return _datasets_of(cfg['dataset'])
    return [dict(cfg)]


def specs_from_config(path: str, cfg_options=None) -> Tuple[list, list]:
    """(training specs, evaluation specs) of a config file."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    train_cfg = cfg.get('train_dataloader', {}).get('dataset')
    train = _datasets_of(train_cfg)
    evaluation = []
    for key in ('val_dataloader', 'test_dataloader'):
        loader = cfg.get(key) or {}
        evaluation.extend(_datasets_of(loader.get('dataset')))
    if train_cfg is not None and train_cfg.get('exclude'):
        evaluation.extend(dict(s) for s in train_cfg['exclude'])
    if not train:
        raise ValueError(f'{path}: no training dataset in '
                         'train_dataloader.dataset')
    return train, evaluation


def check(train_specs: List[dict], eval_specs: List[dict],
          match_by: str = 'image_id', examples: int = 10) -> dict:
    """The report: ``pairs`` (one entry per training set and evaluation
    split), ``train`` (per training set: images shared with any evaluation
    split) and ``leaks`` (total shared images over all pairs)."""
    from sera_mm.datasets.leakage import (SourceCache, expand_specs,
                                          image_keys, overlap, read_split)
    cache = SourceCache()
    trains = _dedupe(expand_specs(train_specs))
    evals = _dedupe(expand_specs(eval_specs))
    need_files = match_by == 'file_name'
    kinds = {('cris' if 'CRIS' in str(s.get('type', '')) else 'refer')
             for s in trains + evals}
    boxes = len(kinds) > 1  # REFER vs CRIS: compare objects by box
    records: Dict[str, list] = OrderedDict()
    for spec in trains + evals:
        if spec['name'] not in records:
            records[spec['name']] = read_split(spec, cache,
                                               file_names=need_files,
                                               boxes=boxes)
    pairs, per_train, total = [], OrderedDict(), 0
    for t in trains:
        shared_any = set()
        for e in evals:
            if t['name'] == e['name']:
                continue
            result = overlap(records[t['name']], records[e['name']],
                             match_by, examples)
            result = OrderedDict([('train', t['name']),
                                  ('eval', e['name'])] + list(
                                      result.items()))
            pairs.append(result)
            total += result['images']
            shared_any |= image_keys(records[e['name']], match_by) & \
                image_keys(records[t['name']], match_by)
        per_train[t['name']] = OrderedDict(
            images=len(image_keys(records[t['name']], match_by)),
            shared_images=len(shared_any))
    return OrderedDict(match_by=match_by, pairs=pairs, train=per_train,
                       leaks=total)


def _dedupe(specs: List[dict]) -> List[dict]:
    seen, out = set(), []
    for spec in specs:
        if spec['name'] not in seen:
            seen.add(spec['name'])
            out.append(spec)
    return out


def format_report(report: dict) -> str:
    lines = ['| training set | evaluation split | shared images | training '
             'refs on them | training expressions on them | identical '
             'expressions (same object) |',
             '|---|---|---|---|---|---|']
    for p in report['pairs']:
        lines.append(f'| {p["train"]} | {p["eval"]} | {p["images"]:,} | '
                     f'{p["refs"]:,} | {p["expressions"]:,} | '
                     f'{p["identical"]:,} |')
    lines.append('')
    for name, t in report['train'].items():
        lines.append(f'{name}: {t["shared_images"]:,} of {t["images"]:,} '
                     f'images are in an evaluation split')
    if report['leaks']:
        lines.append(f'LEAK: training and evaluation share images (matched '
                     f'by {report["match_by"]}); MixedReferDataset removes '
                     'them from training when it loads')
    else:
        lines.append(f'no shared image (matched by {report["match_by"]})')
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    from sera_mm.utils.cli import add_debug_argument
    parser = argparse.ArgumentParser(
        description='Report the images (and identical expressions on the '
        'same object) that training sets share with evaluation splits',
        epilog='SPEC: DATA_ROOT:SPLIT_BY:SPLIT[,SPLIT...] (REFER layout) or '
        'cris:DATA_ROOT:DATASET:SPLIT[,SPLIT...] (CRIS layout)')
    parser.add_argument('--train', nargs='+', default=[], metavar='SPEC',
                        help='training sets')
    parser.add_argument('--eval', nargs='+', default=[], metavar='SPEC',
                        help='evaluation splits')
    parser.add_argument('--config', help='read the training sets and '
                        'evaluation splits from this config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries (with --config)')
    parser.add_argument('--match-by', choices=('image_id', 'file_name'),
                        default='image_id',
                        help='match images by COCO image id (default) or by '
                        'image file name')
    parser.add_argument('--examples', type=int, default=10,
                        help='example ids kept per pair in --json')
    parser.add_argument('--json', help='write the full report here')
    parser.add_argument('--fail-on-leak', action='store_true',
                        help='exit with status 1 when any image is shared')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not args.config and not (args.train and args.eval):
        parser.error('give --train and --eval split specs, or --config')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from sera_mm.utils import setup_runtime
    setup_runtime()  # before sera_mm.datasets imports mmseg
    train = [parse_spec(s) for s in args.train]
    evaluation = [parse_spec(s) for s in args.eval]
    if args.config:
        cfg_train, cfg_eval = specs_from_config(args.config,
                                                args.cfg_options)
        train += cfg_train
        evaluation += cfg_eval
    report = check(train, evaluation, args.match_by, args.examples)
    print(format_report(report))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=1, default=str)
        print(f'report written to {args.json}')
    return 1 if args.fail_on_leak and report['leaks'] else 0


if __name__ == '__main__':
    from sera_mm.utils.cli import run_cli
    sys.exit(run_cli(main))
