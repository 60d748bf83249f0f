"""Test (evaluate) a SERA-MM checkpoint, full or parameter-efficient (PET).

Examples::

    python tools/test.py CONFIG work_dirs/run1/iter_40000.pth
    python tools/test.py CONFIG CKPT --out work_dirs/run1/preds \
        --show-dir work_dirs/run1/vis
    bash tools/dist_test.sh CONFIG CKPT 2

The checkpoint is loaded strictly (see ``sera_mm.engine.pet_checkpoint``):
a PET checkpoint (``meta['pet']``) is merged into the model built with its
pretrained weights; a full one must match the model key for key. Metrics are
printed and written by mmengine to ``<work_dir>/<timestamp>/<timestamp>.json``.

``--out DIR`` writes every prediction as ``DIR/masks/<image>_<sent_id>.png``
(0/255, original resolution) plus ``DIR/predictions.json`` (ids, expression,
mask file, IoU, routing weights). ``--show-dir DIR`` turns on the
visualization hook's drawing and saves the pictures under ``DIR``.
"""
import argparse
import os
import sys

# project configs (projects/*) import their modules from the repository root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sera_mm.utils import setup_runtime

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from mmengine.config import DictAction
from mmengine.logging import print_log

from sera_mm.engine import (QuietConsoleRunner, cleanup_distributed,
                            load_checkpoint_any,
                            read_checkpoint, setup_distributed)
from sera_mm.engine.launch_utils import (add_custom_hook,
                                         adopt_checkpoint_seed,
                                         enable_visualization, load_config,
                                         resolve_work_dir)
from sera_mm.engine.pet_checkpoint import is_pet_checkpoint, unwrap_model
from sera_mm.engine.runner import silence_known_warnings
from sera_mm.registry import RUNNERS
from sera_mm.utils import register_all_modules
from sera_mm.utils.cli import (add_check_base_argument,
                               add_debug_argument, run_cli)
from sera_mm.utils.config_utils import config_errors


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a SERA-MM checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (full or PET)')
    parser.add_argument('--work-dir', help='where metrics and logs go')
    parser.add_argument(
        '--out', help='folder for per-expression mask PNGs and '
        'predictions.json')
    parser.add_argument('--show-dir', help='folder for drawn predictions')
    parser.add_argument('--show-interval', type=int, default=1,
                        help='draw every N-th test batch (with --show-dir)')
    add_check_base_argument(parser)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    silence_known_warnings()
    register_all_modules(init_default_scope=True)
    cfg = load_config(args.config, args.cfg_options)
    resolve_work_dir(cfg, args.config, args.work_dir)
    checkpoint = read_checkpoint(args.checkpoint)
    seed = adopt_checkpoint_seed(cfg, checkpoint)
    cfg.load_from = None  # loaded below, strictly
    cfg.resume = False
    if args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show_interval)
    if args.out:
        add_custom_hook(cfg, dict(type='PredictionDumpHook',
                                  out_dir=args.out))

    setup_distributed(cfg, args.launcher)
    finished = False
    try:
        with config_errors(cfg, args.config):
            runner = (QuietConsoleRunner.from_cfg(cfg)
                      if 'runner_type' not in cfg else
                      RUNNERS.build(cfg))
        pet = is_pet_checkpoint(checkpoint)
        if pet:
            # A PET checkpoint is merged into the pretrained model: initialise
            # it as training did (pretrained init_cfg, seeded random init).
            model = unwrap_model(runner.model)
            if hasattr(model, 'init_weights'):
                model.init_weights()
        load_checkpoint_any(runner.model, checkpoint,
                            check_base=args.check_base,
                            source=f'checkpoint "{args.checkpoint}"')
        print_log(
            f'loaded {"PET" if pet else "full"} checkpoint {args.checkpoint}'
            + (f' (training seed {seed})' if seed is not None else ''),
            logger='current')
        with config_errors(cfg, args.config):
            metrics = runner.test()
        finished = True
    finally:
        cleanup_distributed(barrier=finished)
    return metrics


if __name__ == '__main__':
    run_cli(main)
