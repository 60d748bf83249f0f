"""One-command check of the CUDA path: train, test and benchmark the
ViT-B/16 and DINOv2-B/14 geometries on one GPU.

    python tools/analysis/gpu_check.py [--out-dir work_dirs/gpu_check]

For every config (default ``configs/sera/sera_vitb_refcoco.py`` and
``configs/sera/sera_dinov2-b_refcoco.py``) with random weights of the
configured geometry (no download) on the built-in synthetic benchmark at
the config's input size (416 / 448):

1. ``tools/train.py`` for ``--iters`` iterations (default 50, batch 8), in
   fp32 and with ``--amp`` (fp16, dynamic loss scaling), each followed by
   ``tools/test.py`` on ``--test-samples`` val expressions;
2. ``tools/analysis/benchmark.py --device cuda``: latency at batch 1,
   throughput at batch 32, training step at batch 8 and peak GPU memory,
   each beside the bare frozen encoders;

then one summary table (``<out-dir>/gpu_check.md``, also printed). On one
modern GPU it takes about 5 minutes (most of it process start-up and the
benchmark). Without CUDA it exits with status 2 and says so, unless
``--allow-cpu`` (a wiring check of this script on CPU, used by the tests
with the tiny config).

Wheels needed beyond what ``tools/install.sh`` installs: none; on a machine
without network, carry the project's requirements as wheels (mmengine,
mmcv-lite, mmsegmentation, addict, yapf, pycocotools, ftfy, regex,
termcolor, clip-anytorch; see the README's GPU section).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIGS = ('configs/sera/sera_vitb_refcoco.py',
                   'configs/sera/sera_dinov2-b_refcoco.py')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--configs', nargs='+', default=list(DEFAULT_CONFIGS))
    p.add_argument('--out-dir', default='work_dirs/gpu_check')
    p.add_argument('--iters', type=int, default=50)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--test-samples', type=int, default=256)
    p.add_argument('--data-root', default='data/synthetic',
                   help='synthetic benchmark (generated if missing)')
    p.add_argument('--throughput-batch', type=int, default=32)
    p.add_argument('--bench-runs', type=int, default=10)
    p.add_argument('--skip-bench', action='store_true')
    p.add_argument('--no-amp', action='store_true',
                   help='skip the --amp training run')
    p.add_argument('--allow-cpu', action='store_true',
                   help='run on CPU (a wiring check, not a GPU check)')
    p.add_argument('--input-size', type=int, default=None,
                   help='override the configs\' input size')
    return p.parse_args(argv)


def make_check_config(config: str, out_path: str, iters: int,
                      batch_size: int, test_samples: int, data_root: str,
                      input_size: Optional[int] = None) -> str:
    """Write a config that trains ``config``'s model (random weights) on
    the synthetic benchmark at the config's input size for ``iters``
    iterations; returns its path."""
    sys.path.insert(0, ROOT)
    from sera_mm.utils import setup_runtime
    setup_runtime()  # mmcv.ops fallback, checkpoint safe globals
    from mmengine.config import Config

    from sera_mm.utils.config_utils import random_init_cfg
    cfg = Config.fromfile(osp.join(ROOT, config) if not osp.isabs(config)
                          else config)
    data = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets',
                                    'synthetic.py'))
    size = input_size or int(cfg.model.data_preprocessor['size'][0])
    cfg.model = random_init_cfg(cfg.model, force=True)
    cfg.model.data_preprocessor['size'] = (size, size)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = data[key]
        loader['dataset']['data_root'] = data_root
        for t in loader['dataset']['pipeline']:
            if t['type'] == 'Letterbox':
                t['size'] = size
        loader['num_workers'] = 2
        cfg[key] = loader
    cfg.train_dataloader['batch_size'] = batch_size
    cfg.test_dataloader['dataset']['indices'] = test_samples
    cfg.val_dataloader['dataset']['indices'] = test_samples
    cfg.val_evaluator = cfg.test_evaluator = dict(type='ReferMetric')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=10 ** 9, val_begin=10 ** 9)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0,
                                by_epoch=False, begin=0, end=iters)]
    cfg.default_hooks = dict(cfg.get('default_hooks', {}))
    cfg.default_hooks['logger'] = dict(
        type='LoggerHook', interval=max(1, min(10, iters // 2)),
        log_metric_by_epoch=False)
    cfg.default_hooks['checkpoint'] = dict(
        type='CheckpointHook', by_epoch=False, interval=iters,
        max_keep_ckpts=1, save_best=None)
    cfg.log_processor = dict(by_epoch=False)
    cfg.pop('final_test_splits', None)
    os.makedirs(osp.dirname(out_path), exist_ok=True)
    cfg.dump(out_path)
    return out_path


def _run(cmd: List[str], log_path: str) -> float:
    """Run ``cmd`` (output into ``log_path``), return its wall time; raise
    with the log's tail on failure."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    start = time.monotonic()
    with open(log_path, 'w') as log:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log,
                             stderr=subprocess.STDOUT, env=env)
    wall = time.monotonic() - start
    if rc != 0:
        tail = open(log_path).read()[-3000:]
        raise RuntimeError(f'{" ".join(cmd)} failed ({rc}); end of '
                           f'{log_path}:\n{tail}')
    return wall


def _train_stats(work_dir: str) -> Dict[str, float]:
    """Median seconds per iteration and last loss from mmengine's
    scalars.json."""
    import statistics
    found = []
    for dirpath, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            found.append(osp.join(dirpath, 'scalars.json'))
    times, loss, mem = [], None, None
    for path in sorted(found)[-1:]:
        for line in open(path):
            rec = json.loads(line)
            if 'time' in rec and 'loss' in rec:
                times.append(float(rec['time']))
                loss = float(rec['loss'])
                mem = rec.get('memory', mem)
    return dict(s_per_iter=statistics.median(times) if times else None,
                loss=loss, memory_mb=mem)


def _bench_rows(md_path: str) -> Dict[str, List[str]]:
    rows = {}
    for line in open(md_path):
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 4 and cells[0] not in ('metric', '---'):
            rows[cells[0]] = cells[1:]
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    if not torch.cuda.is_available() and not args.allow_cpu:
        print('gpu_check: no CUDA device is visible to torch '
              f'{torch.__version__} (torch.cuda.is_available() is False); '
              'run it on a GPU machine with a CUDA build of torch',
              file=sys.stderr)
        return 2
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    name = torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU'
    out_dir = osp.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    py = sys.executable
    summary = [f'# GPU check: {name}', '',
               f'torch {torch.__version__}, {args.iters} training '
               f'iterations at batch {args.batch_size}, random weights of '
               'the configured geometry, synthetic data.', '',
               '| config | amp | train (s/iter, median) | train wall (s) | '
               'last loss | GPU memory (MB) | test mIoU | test wall (s) |',
               '|---|---|---|---|---|---|---|---|']
    bench = []
    for config in args.configs:
        stem = osp.splitext(osp.basename(config))[0]
        check_cfg = make_check_config(
            config, osp.join(out_dir, stem, f'{stem}_check.py'), args.iters,
            args.batch_size, args.test_samples, args.data_root,
            args.input_size)
        for amp in ([False] if args.no_amp else [False, True]):
            tag = 'amp' if amp else 'fp32'
            wd = osp.join(out_dir, stem, tag)
            cmd = [py, osp.join(ROOT, 'tools', 'train.py'), check_cfg,
                   '--work-dir', wd] + (['--amp'] if amp else [])
            print(f'[gpu_check] {stem} {tag}: training', flush=True)
            train_wall = _run(cmd, osp.join(wd + '_train.log'))
            stats = _train_stats(wd)
            ckpt = open(osp.join(wd, 'last_checkpoint')).read().strip()
            print(f'[gpu_check] {stem} {tag}: testing', flush=True)
            test_wall = _run([py, osp.join(ROOT, 'tools', 'test.py'),
                              check_cfg, ckpt,
                              '--work-dir', osp.join(wd, 'test_run')],
                             osp.join(wd + '_test.log'))
            metrics = _find_metrics(osp.join(wd, 'test_run'))
            summary.append(
                f'| {stem} | {tag} | {_fmt(stats["s_per_iter"], 3)} | '
                f'{train_wall:.0f} | {_fmt(stats["loss"], 3)} | '
                f'{_fmt(stats["memory_mb"], 0)} | '
                f'{_fmt(metrics.get("mIoU"), 2)} | {test_wall:.0f} |')
        if not args.skip_bench:
            print(f'[gpu_check] {stem}: benchmark', flush=True)
            bdir = osp.join(out_dir, stem, 'benchmark')
            _run([py, osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'),
                  check_cfg, '--device', device, '--batch-size',
                  str(args.batch_size), '--throughput-batch',
                  str(args.throughput_batch), '--runs', str(args.bench_runs),
                  '--warmup', '3', '--no-flops', '--out-dir', bdir],
                 osp.join(out_dir, stem, 'benchmark.log'))
            bench.append((stem, _bench_rows(osp.join(bdir, 'benchmark.md'))))
    if bench:
        summary += ['', '| config | metric | SERA | bare encoders | ratio |',
                    '|---|---|---|---|---|']
        for stem, rows in bench:
            for metric, (a, b, r) in rows.items():
                if metric.startswith(('latency', 'throughput', 'train step',
                                      'peak memory')):
                    summary.append(f'| {stem} | {metric} | {a} | {b} | {r} |')
    text = '\n'.join(summary) + '\n'
    with open(osp.join(out_dir, 'gpu_check.md'), 'w') as f:
        f.write(text)
    print(text)
    return 0


def _find_metrics(*folders: str) -> Dict[str, float]:
    """The ReferMetric values tools/test.py wrote (any ``*.json`` with an
    ``mIoU`` key under the folders)."""
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for name in sorted(files):
                if not name.endswith('.json'):
                    continue
                try:
                    data = json.load(open(osp.join(dirpath, name)))
                except (ValueError, OSError):
                    continue
                if isinstance(data, dict) and 'mIoU' in data:
                    return data
    return {}


def _fmt(value, digits: int) -> str:
    return '-' if value is None else f'{float(value):.{digits}f}'


if __name__ == '__main__':
    sys.exit(main())
