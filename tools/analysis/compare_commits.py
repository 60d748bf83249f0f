"""Time the real training loop (or the evaluation) of this checkout against
a git revision.

    python tools/analysis/compare_commits.py REV \
        [--config configs/sera/sera_mnv2-minilm_synthetic.py] \
        [--pairs 3] [--iters 60] [--skip 20] [--threads 2] \
        [--images N --skip-images M] \
        [--data-root data/synthetic] [--out-dir DIR] [--keep] \
        [--test-checkpoint CKPT [--test-split val]]

REV is checked out into a temporary git worktree. Then, ``--pairs`` times,
``tools/train.py CONFIG`` runs for ``--iters`` iterations once from this
checkout and once from REV's, alternating which goes first, each in its own
process with the same data (``--data-root``, generated once), seed and
thread count, and no final evaluation. Each run's time per iteration is
the mean of mmengine's logged ``time`` over iterations ``--skip``+1 ..
``--iters`` (start-up excluded). Every pair gives a ratio (REV / this
checkout: above 1 means this checkout is faster); the report prints the
min, median and max of the ratios and of each side's time per iteration,
and writes ``compare_commits.md`` and ``.json`` to ``--out-dir``. Pairs in
alternation cancel most of the machine's drift; quote the ratio, not the
absolute times.

Each side's batch size is read from its config (``train_dataloader.
batch_size``, after ``--cfg-options``), and the report also gives the
training throughput in images per second and its ratio (this / rev; above
1 means this checkout trains more images per second): the figure to quote
when the two sides train at different batch sizes. With ``--images N
--skip-images M`` each side runs ``ceil(N / batch)`` iterations and leaves
out the first ``ceil(M / batch)``, so both are timed over the same images
of the data order (the caches of the frozen encoders fill per image, not
per iteration).

With ``--test-checkpoint CKPT``, each run is ``tools/test.py CONFIG CKPT`` on
``--test-split`` instead (the same checkpoint file for both sides), timed
as the whole process (start-up, data, model, metric, pictures): the cost of
an evaluation, such as the final evaluation of a training run.
"""
import argparse
import glob
import json
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = 'configs/sera/sera_mnv2-minilm_synthetic.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time the training loop of this checkout against a git '
        'revision, in alternating processes; prints the ratio with '
        'min/median/max over pairs')
    parser.add_argument('rev', help='git revision to compare with (e.g. '
                        'a commit id, HEAD~3, a tag)')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='config path, relative to the repository root '
                        'of each side (must exist in both)')
    parser.add_argument('--pairs', type=int, default=3)
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--skip', type=int, default=20,
                        help='iterations left out at the start of each run')
    parser.add_argument('--images', type=int, default=None,
                        help='time each side over this many training images '
                        '(iterations = ceil(images / its batch size)) '
                        'instead of --iters')
    parser.add_argument('--skip-images', type=int, default=0,
                        help='with --images: images left out at the start '
                        'of each run')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--data-root', default=None,
                        help='the synthetic data both sides read (default: '
                        'generated once under the output folder)')
    parser.add_argument('--out-dir', default=None,
                        help='default: work_dirs/compare_commits/<rev>')
    parser.add_argument('--cfg-options', nargs='*', default=[],
                        help='extra key=value options for both sides')
    parser.add_argument('--keep', action='store_true',
                        help='keep the worktree and run folders')
    parser.add_argument('--test-checkpoint', default=None,
                        help='time tools/test.py with this checkpoint '
                        'instead of training')
    parser.add_argument('--test-split', default='val',
                        help='split evaluated with --test-checkpoint')
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.iters < 2 or not 0 <= args.skip < args.iters:
        parser.error('--pairs must be >= 1, --iters >= 2 and 0 <= --skip < '
                     '--iters')
    if args.images is not None and not 0 <= args.skip_images < args.images:
        parser.error('--images must be > --skip-images >= 0')
    return args


def batch_size(tree: str, config: str, options: List[str]) -> int:
    """``train_dataloader.batch_size`` of ``config`` in ``tree`` with the
    ``key=value`` ``options`` applied, read with the loader ``tools/train.py``
    uses (:func:`sera_mm.engine.launch_utils.load_config`).

    Raises:
        ValueError: the config has no positive integer batch size.
    """
    from mmengine.config import DictAction

    from sera_mm.engine.launch_utils import load_config
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg_options = (parser.parse_args(['--cfg-options', *options]).cfg_options
                   if options else None)
    cfg = load_config(osp.join(tree, config), cfg_options)
    value = cfg.get('train_dataloader', {}).get('batch_size')
    if not isinstance(value, int) or value < 1:
        raise ValueError(f'{config} at {tree}: train_dataloader.batch_size '
                         f'must be a positive integer, got {value!r}')
    return value


def window(batch: int, images: int, skip_images: int) -> Tuple[int, int]:
    """(iterations, skipped iterations) that cover ``images`` and leave out
    ``skip_images`` at batch size ``batch``."""
    return -(-images // batch), -(-skip_images // batch)


def resolve_rev(rev: str, root: str = ROOT) -> str:
    """The full commit id of ``rev``.

    Raises:
        ValueError: ``rev`` is not a commit of this repository.
    """
    out = subprocess.run(['git', 'rev-parse', '--verify', f'{rev}^{{commit}}'],
                         cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f'{rev!r} is not a commit of {root}: '
                         f'{out.stderr.strip()}')
    return out.stdout.strip()


def add_worktree(commit: str, where: str, root: str = ROOT) -> str:
    subprocess.run(['git', 'worktree', 'add', '--detach', where, commit],
                   cwd=root, check=True, capture_output=True, text=True)
    return where


def remove_worktree(where: str, root: str = ROOT) -> None:
    subprocess.run(['git', 'worktree', 'remove', '--force', where], cwd=root,
                   capture_output=True, text=True)


def iteration_times(work_dir: str) -> List[float]:
    """mmengine's logged ``time`` of every training record, in order."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    if not files:
        raise RuntimeError(f'no scalars.json under {work_dir}: the run did '
                           f'not log any iteration')
    times = []
    with open(files[-1]) as f:
        for line in f:
            record = json.loads(line)
            if 'loss' in record and 'time' in record:
                times.append((int(record['iter']), float(record['time'])))
    return [t for _, t in sorted(times)]


def run_side(tree: str, config: str, work_dir: str, iters: int,
             threads: int, data_root: str, options: List[str]) -> None:
    """Train ``iters`` iterations from ``tree`` into ``work_dir``."""
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    opts = [f'{k}.dataset.data_root={data_root}' for k in loaders] + [
        f'train_cfg.max_iters={iters}', 'train_cfg.val_interval=1000000',
        'train_cfg.val_begin=1000000', 'default_hooks.logger.interval=1',
        'final_test_splits=[]', 'default_hooks.checkpoint.interval=1000000',
        'custom_hooks=[]'
    ] + list(options)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=tree)
    cmd = [sys.executable, osp.join(tree, 'tools', 'train.py'),
           osp.join(tree, config), '--work-dir', work_dir, '--cfg-options',
           *opts]
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f'training from {tree} failed:\n'
                           f'{out.stderr[-3000:]}')


def test_side(tree: str, config: str, work_dir: str, checkpoint: str,
              split: str, threads: int, data_root: str,
              options: List[str]) -> float:
    """Evaluate ``checkpoint`` on ``split`` with ``tools/test.py`` from
    ``tree``; returns the wall seconds of the whole process."""
    opts = [f'test_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.split={split}'] + list(options)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=tree)
    cmd = [sys.executable, osp.join(tree, 'tools', 'test.py'),
           osp.join(tree, config), checkpoint, '--work-dir', work_dir,
           '--cfg-options', *opts]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f'evaluation from {tree} failed:\n'
                           f'{out.stderr[-3000:]}')
    return time.perf_counter() - start


def summarise(values: List[float]) -> Dict[str, float]:
    return dict(min=min(values), median=statistics.median(values),
                max=max(values))


def compare(rev: str, config: str = DEFAULT_CONFIG, pairs: int = 3,
            iters: int = 60, skip: int = 20, threads: int = 2,
            data_root: Optional[str] = None, out_dir: Optional[str] = None,
            options: Optional[List[str]] = None, keep: bool = False,
            root: str = ROOT, test_checkpoint: Optional[str] = None,
            test_split: str = 'val', images: Optional[int] = None,
            skip_images: int = 0) -> dict:
    """Run the comparison (see the module docstring); returns the report."""
    commit = resolve_rev(rev, root)
    out_dir = out_dir or osp.join(root, 'work_dirs', 'compare_commits',
                                  commit[:10])
    os.makedirs(out_dir, exist_ok=True)
    if not osp.isfile(osp.join(root, config)):
        raise FileNotFoundError(f'config {config} not found in {root}')
    if test_checkpoint is not None:
        test_checkpoint = osp.abspath(test_checkpoint)
        if not osp.isfile(test_checkpoint):
            raise FileNotFoundError(f'--test-checkpoint {test_checkpoint} '
                                    f'not found')
    scratch = tempfile.mkdtemp(prefix='compare_commits_')
    tree = add_worktree(commit, osp.join(scratch, 'rev'), root)
    try:
        if not osp.isfile(osp.join(tree, config)):
            raise FileNotFoundError(f'config {config} does not exist at '
                                    f'{rev} ({commit[:10]})')
        data_root = osp.abspath(data_root or osp.join(out_dir, 'data'))
        sides = {'this': root, 'rev': tree}
        if test_checkpoint is None:  # training is timed
            batches = {side: batch_size(path, config, options or [])
                       for side, path in sides.items()}
            plan = {side: ((iters, skip) if images is None else
                           window(batches[side], images, skip_images))
                    for side in sides}
        else:
            batches = plan = {}
        per_pair = []
        for i in range(pairs):
            order = ('this', 'rev') if i % 2 == 0 else ('rev', 'this')
            times = {}
            for side in order:
                wd = osp.join(scratch, f'{side}_{i}')
                if test_checkpoint is not None:
                    times[side] = test_side(sides[side], config, wd,
                                            test_checkpoint, test_split,
                                            threads, data_root,
                                            options or [])
                    continue
                side_iters, side_skip = plan[side]
                run_side(sides[side], config, wd, side_iters, threads,
                         data_root, options or [])
                t = iteration_times(wd)[side_skip:]
                if not t:
                    raise RuntimeError(f'no iteration after skipping '
                                       f'{side_skip} in {wd}')
                times[side] = statistics.fmean(t)
            pair = dict(order=list(order), this_s=times['this'],
                        rev_s=times['rev'],
                        ratio=times['rev'] / times['this'])
            if test_checkpoint is None:
                pair.update(
                    this_images_s=batches['this'] / times['this'],
                    rev_images_s=batches['rev'] / times['rev'])
                pair['throughput_ratio'] = (pair['this_images_s'] /
                                            pair['rev_images_s'])
            per_pair.append(pair)
        report = dict(
            rev=rev, commit=commit, config=config, pairs=per_pair,
            iters=iters, skip=skip, threads=threads, images=images,
            skip_images=skip_images, batch_size=batches,
            windows={side: dict(iters=n, skip=k)
                     for side, (n, k) in plan.items()},
            # recorded relative to the checkout (no machine path in reports)
            test_checkpoint=None if test_checkpoint is None else (
                osp.relpath(test_checkpoint, root)
                if test_checkpoint.startswith(osp.abspath(root) + os.sep)
                else osp.basename(test_checkpoint)),
            test_split=test_split,
            ratio=summarise([p['ratio'] for p in per_pair]),
            this_s=summarise([p['this_s'] for p in per_pair]),
            rev_s=summarise([p['rev_s'] for p in per_pair]))
        if test_checkpoint is None:
            report['throughput_ratio'] = summarise(
                [p['throughput_ratio'] for p in per_pair])
    finally:
        if not keep:
            remove_worktree(tree, root)
            shutil.rmtree(scratch, ignore_errors=True)
    lines = format_report(report)
    with open(osp.join(out_dir, 'compare_commits.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(osp.join(out_dir, 'compare_commits.json'), 'w') as f:
        json.dump(report, f, indent=2)
    return report


def format_report(report: dict) -> List[str]:
    r, t, v = report['ratio'], report['this_s'], report['rev_s']
    if report.get('test_checkpoint'):
        what = (f'`tools/test.py` of `{osp.basename(report["test_checkpoint"])}`'
                f' on {report["test_split"]}, whole process')
        unit = 's'
    elif report.get('images'):
        w, b = report['windows'], report['batch_size']
        what = (f'images {report["skip_images"] + 1}-{report["images"]} of '
                f'the data order timed (this checkout: batch {b["this"]}, '
                f'iterations {w["this"]["skip"] + 1}-{w["this"]["iters"]}; '
                f'{report["rev"]}: batch {b["rev"]}, iterations '
                f'{w["rev"]["skip"] + 1}-{w["rev"]["iters"]})')
        unit = 's/iter'
    else:
        b = report.get('batch_size', {})
        what = (f'{report["iters"]} iterations per run (time per iteration '
                f'over iterations {report["skip"] + 1}-{report["iters"]}; '
                f'batch {b.get("this")} here, {b.get("rev")} at '
                f'{report["rev"]})')
        unit = 's/iter'
    lines = [
        f'# This checkout against {report["rev"]} '
        f'({report["commit"][:10]})', '',
        f'`{report["config"]}`, {what}, {report["threads"]} threads, '
        f'{len(report["pairs"])} pairs in alternation.', '',
        '| | min | median | max |', '|---|---:|---:|---:|',
        f'| ratio (rev / this; > 1: this is faster) | {r["min"]:.3f} | '
        f'{r["median"]:.3f} | {r["max"]:.3f} |',
        f'| this checkout, {unit} | {t["min"]:.3f} | {t["median"]:.3f} | '
        f'{t["max"]:.3f} |',
        f'| {report["rev"]}, {unit} | {v["min"]:.3f} | {v["median"]:.3f} | '
        f'{v["max"]:.3f} |'
    ]
    if report.get('throughput_ratio'):
        q = report['throughput_ratio']
        lines.append(f'| training throughput, images/s (this / rev; > 1: '
                     f'this is faster) | {q["min"]:.3f} | {q["median"]:.3f} '
                     f'| {q["max"]:.3f} |')
    lines.append('')
    for i, p in enumerate(report['pairs']):
        line = (f'- pair {i + 1} ({" then ".join(p["order"])}): '
                f'{p["this_s"]:.3f} vs {p["rev_s"]:.3f} {unit}, ratio '
                f'{p["ratio"]:.3f}')
        if 'throughput_ratio' in p:
            line += (f'; {p["this_images_s"]:.1f} vs {p["rev_images_s"]:.1f}'
                     f' images/s, ratio {p["throughput_ratio"]:.3f}')
        lines.append(line)
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = compare(args.rev, args.config, args.pairs, args.iters,
                         args.skip, args.threads, args.data_root,
                         args.out_dir, args.cfg_options, args.keep,
                         test_checkpoint=args.test_checkpoint,
                         test_split=args.test_split, images=args.images,
                         skip_images=args.skip_images)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print('\n'.join(format_report(report)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
