"""Routing statistics of a trained SERA model: mean expert weights per
expression type, per router and per router group.

Example::

    python tools/analysis/router_stats.py CONFIG CKPT --split val \
        --max-samples 2000 --out-dir work_dirs/run1/router_stats

Runs the config's test dataloader (its dataset's ``split`` replaced by
``--split``), reads each prediction's ``routing`` metainfo and writes
``router_stats.md`` (one table per router group: rows are expression types,
columns experts; then one table per router), ``router_stats.csv`` (long form)
and ``router_stats.png`` (grouped bars) into ``--out-dir``. The checkpoint may
be full or parameter-efficient (PET).
"""
import argparse
import copy
import logging
import os.path as osp
import sys
from typing import List, Optional

from sera_mm.utils import setup_runtime

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from mmengine.config import DictAction  # noqa: E402

from sera_mm.utils.cli import (add_check_base_argument,  # noqa: E402
                               add_debug_argument, run_cli)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Mean router expert weights per expression type')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (full or PET)')
    parser.add_argument('--split', default='val',
                        help='dataset split to run (replaces the test '
                        "dataloader's dataset split)")
    parser.add_argument('--max-samples', type=int, default=None,
                        help='stop after this many expressions')
    parser.add_argument('--out-dir', default=None,
                        help='output folder (default: <work_dir or '
                        './work_dirs/<config>>/router_stats)')
    parser.add_argument('--device', default='cpu', help="e.g. 'cpu'")
    parser.add_argument('--no-plot', action='store_true',
                        help='skip router_stats.png')
    add_check_base_argument(parser)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.max_samples is not None and args.max_samples < 1:
        parser.error(f'--max-samples must be >= 1, got {args.max_samples}')
    return args


def _set_split(dataset_cfg, split: str) -> None:
    """Set ``split`` on the dataset config (inside wrappers too)."""
    if 'dataset' in dataset_cfg and 'split' not in dataset_cfg:
        _set_split(dataset_cfg['dataset'], split)
    elif 'datasets' in dataset_cfg and 'split' not in dataset_cfg:
        for sub in dataset_cfg['datasets']:
            _set_split(sub, split)
    else:
        dataset_cfg['split'] = split


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import torch
    from mmengine.logging import print_log
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from sera_mm.apis import init_model
    from sera_mm.engine.launch_utils import load_config
    from sera_mm.utils import register_all_modules
    from sera_mm.visualization import (aggregate_routing, routing_from_sample,
                                       write_router_stats)

    register_all_modules(init_default_scope=True)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'sera_mm'))
    if cfg.get('test_dataloader') is None:
        raise KeyError(f'{args.config} has no test_dataloader')
    out_dir = args.out_dir or osp.join(
        cfg.get('work_dir') or osp.join(
            './work_dirs', osp.splitext(osp.basename(args.config))[0]),
        'router_stats')

    model = init_model(cfg, args.checkpoint, device=args.device,
                       check_base=args.check_base)
    loader_cfg = copy.deepcopy(cfg.test_dataloader)
    _set_split(loader_cfg['dataset'], args.split)
    loader_cfg.setdefault('num_workers', 0)
    if loader_cfg['num_workers'] == 0:
        loader_cfg['persistent_workers'] = False
    dataloader = Runner.build_dataloader(loader_cfg)

    metas = []
    limit = args.max_samples
    with torch.no_grad():
        for batch in dataloader:
            for pred in model.test_step(batch):
                metas.append(routing_from_sample(pred))
                if limit is not None and len(metas) >= limit:
                    break
            if limit is not None and len(metas) >= limit:
                break
    stats = aggregate_routing(metas)
    if stats['skipped'] == len(metas):
        print_log('no prediction carried routing metainfo: is the model '
                  'a SERA model with routers?', logger='current',
                  level=logging.WARNING)
    paths = write_router_stats(stats, out_dir, plot=not args.no_plot)
    print_log(f'router statistics of {len(metas)} expressions '
              f'(split {args.split}) written to '
              + ', '.join(paths.values()), logger='current')
    return stats


if __name__ == '__main__':
    run_cli(main, sys.argv[1:])
