"""Train a SERA-MM model (mmseg's ``tools/train.py`` behaviour).

Examples::

    python tools/train.py configs/sera/sera_vitb_refcoco.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --amp \
        --cfg-options train_cfg.max_iters=1000
    python tools/train.py CONFIG --resume            # latest in work dir
    python tools/train.py CONFIG --resume path/to/iter_2000.pth
    bash tools/dist_train.sh CONFIG 2                # torchrun, CPU or GPU

``--compile``: the config key ``compile=True`` (a config may set
``compile = dict(...)`` with ``torch.compile`` options instead): the
segmentor's ``loss`` (forward of the training step) runs through
``torch.compile``, backward through the compiled graphs' backward, and the
optimizer step stays eager (mmengine's own handling of the key compiles
the whole ``train_step``, which fails on its optimizer wrapper). The first
iterations compile (tens of seconds on a CPU); the README's performance
section has what it gains.

``--amp``: with CUDA, mmengine's ``AmpOptimWrapper`` (fp16 with dynamic loss
scaling); without CUDA, ``CPUAmpOptimWrapper`` (bfloat16 autocast, the only
dtype CPU autocast supports; no loss scaling needed).

Unless the config names an optimizer wrapper constructor, the optimizer is
built by ``SummaryOptimWrapperConstructor``: the console gets one summary
line of the parameter groups, the per-parameter lines go to the log file
only. Bad input (a missing file, a wrong option value) is one ``error:``
line and exit status 2 (1 for a RuntimeError); ``--debug`` keeps the
traceback. That includes a config argument a component does not accept
(named by its dotted path) and a missing, truncated or unsafe checkpoint to
resume from (read once before the Runner is built).
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

from sera_mm.engine import (QuietConsoleRunner, cleanup_distributed,
                            setup_distributed)
from sera_mm.engine.runner import silence_known_warnings
from sera_mm.engine.final_evaluation import evaluate_splits
from sera_mm.engine.optim_wrappers import use_summary_constructor
from sera_mm.engine.launch_utils import (check_checkpoint_to_load,
                                         compile_model_methods,
                                         enable_amp, enable_auto_scale_lr,
                                         load_best_checkpoint, load_config,
                                         resolve_work_dir,
                                         take_compile_options,
                                         write_run_record)
from sera_mm.registry import RUNNERS
from sera_mm.utils import register_all_modules
from sera_mm.utils.cli import add_debug_argument, run_cli
from sera_mm.utils.config_utils import config_errors


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a SERA-MM model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        help='resume from CKPT, or (no value) from the latest checkpoint in '
        'the work dir')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision (fp16 on CUDA, bfloat16 autocast on CPU)')
    parser.add_argument(
        '--compile', action='store_true',
        help='torch.compile the model\'s loss (the config key '
        '"compile=True"); the first iterations compile')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value (e.g. '
        'train_cfg.max_iters=100 "model.neck.channels=128")')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument(
        '--test-splits', nargs='+', default=None,
        help='after training, evaluate these splits of the test dataset '
        '(e.g. val testA testB) and write <work_dir>/final_metrics.md/.json;'
        ' default: the config\'s final_test_splits, if any')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate linearly with the total batch (GPUs x '
        'images per GPU) against the config\'s auto_scale_lr.'
        'base_batch_size, the batch its recipe was set for')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    silence_known_warnings()
    register_all_modules(init_default_scope=True)
    cfg = load_config(args.config, args.cfg_options)
    resolve_work_dir(cfg, args.config, args.work_dir)
    # one summary line instead of one console line per parameter (the
    # per-parameter records stay in the log file)
    use_summary_constructor(cfg)
    if args.amp:
        enable_amp(cfg)
    if args.compile and not cfg.get('compile'):
        cfg.compile = True  # keeps a config's own torch.compile options
    compile_options = take_compile_options(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg, args.config)
    if args.resume == 'auto':
        cfg.resume = True  # the Runner finds the latest checkpoint
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    else:
        cfg.resume = False

    # a missing, truncated or unsafe checkpoint to resume from is an error
    # naming it, before any work
    check_checkpoint_to_load(cfg)

    setup_distributed(cfg, args.launcher)
    finished = False
    try:
        # a config entry a component does not accept names the entry
        with config_errors(cfg, args.config):
            runner = (QuietConsoleRunner.from_cfg(cfg)
                      if 'runner_type' not in cfg else RUNNERS.build(cfg))
            if compile_options is not None:
                compile_model_methods(runner.model, ('loss', ),
                                      compile_options)
                runner.logger.info('the model\'s loss is compiled '
                                   '(torch.compile); the first iterations '
                                   'compile')
            write_run_record(runner)
            runner.train()
        splits = args.test_splits or cfg.get('final_test_splits')
        if splits:
            # the best checkpoint when the config keeps one, else the
            # weights training ended with; the metrics file says which
            weights = load_best_checkpoint(runner)
            evaluate_splits(runner, splits, weights=weights)
        finished = True
    finally:
        cleanup_distributed(barrier=finished)


if __name__ == '__main__':
    run_cli(main)
