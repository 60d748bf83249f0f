"""Validation curves of training runs, side by side.

Runs with validation during training (e.g. the 2-hour schedule, every
1,200 iterations) log each validation to ``<work_dir>/<timestamp>/vis_data/
scalars.json``; this tool tabulates mIoU (overall and per expression type)
by iteration for several runs, so that rows can be compared as training
goes on (does a difference grow with training?)::

    python tools/analysis/val_curve.py RUN_A RUN_B [...] [--names a b]
        [--metric mIoU] [--out-dir DIR]

A run is a work dir (all its timestamp folders are read, so a resumed run
gives one curve) or a ``scalars.json``. Writes ``val_curve.md`` (and
``val_curve.png`` with matplotlib) to ``--out-dir``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence


def scalar_files(run: str) -> List[str]:
    """The ``scalars.json`` files of a run (a work dir, a timestamp dir or
    the file itself), oldest first."""
    if osp.isfile(run):
        return [run]
    if not osp.isdir(run):
        raise FileNotFoundError(f'{run}: no such run folder or file')
    files = glob.glob(osp.join(run, 'vis_data', 'scalars.json')) + glob.glob(
        osp.join(run, '*', 'vis_data', 'scalars.json'))
    if not files:
        raise FileNotFoundError(
            f'{run}: no <timestamp>/vis_data/scalars.json (mmengine '
            'LocalVisBackend) in it')
    return sorted(files)


def read_curve(run: str, metric: str = 'mIoU') -> Dict[int, Dict[str, float]]:
    """Iteration -> ``{metric: value, '<type>/<metric>': value, ...}`` of
    every validation logged by ``run`` (a later record of the same
    iteration, e.g. after a resume, wins)."""
    curve: Dict[int, Dict[str, float]] = {}
    for path in scalar_files(run):
        with open(path, encoding='utf-8') as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f'{path}, line {n}: not JSON ({e})')
                if metric not in record or 'step' not in record:
                    continue
                curve[int(record['step'])] = {
                    k: float(v) for k, v in record.items()
                    if k == metric or k.endswith('/' + metric)}
    return curve


def format_curves(curves: Dict[str, Dict[int, Dict[str, float]]],
                  metric: str) -> str:
    names = list(curves)
    steps = sorted({s for c in curves.values() for s in c})
    lines = [f'# Validation {metric} during training', '',
             '| iteration | ' + ' | '.join(names) + ' |',
             '| ---: | ' + ' | '.join('---:' for _ in names) + ' |']
    for s in steps:
        cells = [f'{curves[n][s][metric]:.2f}' if s in curves[n] else ''
                 for n in names]
        lines.append(f'| {s} | ' + ' | '.join(cells) + ' |')
    types = sorted({k.split('/')[0] for c in curves.values()
                    for rec in c.values() for k in rec if '/' in k})
    if types:
        lines += ['', f'Per expression type ({metric}):', '',
                  '| iteration | run | ' + ' | '.join(types) + ' |',
                  '| ---: | --- | ' + ' | '.join('---:' for _ in types) +
                  ' |']
        for s in steps:
            for n in names:
                rec = curves[n].get(s)
                if rec is None:
                    continue
                cells = [f'{rec[t + "/" + metric]:.2f}'
                         if t + '/' + metric in rec else '' for t in types]
                lines.append(f'| {s} | {n} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_curves(curves: Dict[str, Dict[int, Dict[str, float]]], metric: str,
                path: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        steps = sorted(curve)
        ax.plot(steps, [curve[s][metric] for s in steps], marker='o',
                label=name)
    ax.set_xlabel('iteration')
    ax.set_ylabel(f'val {metric}')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='work dirs or scalars.json')
    parser.add_argument('--names', nargs='+',
                        help='column names (default: folder names)')
    parser.add_argument('--metric', default='mIoU')
    parser.add_argument('--out-dir', help='write val_curve.md/.png here')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    names = args.names or [osp.basename(osp.normpath(r)) for r in args.runs]
    if len(names) != len(args.runs):
        raise ValueError(f'--names gives {len(names)} names for '
                         f'{len(args.runs)} runs')
    if len(set(names)) != len(names):
        raise ValueError(f'run names must differ, got {names} (use --names)')
    curves = {}
    for name, run in zip(names, args.runs):
        curve = read_curve(run, args.metric)
        if not curve:
            raise ValueError(f'{run}: no validation with {args.metric!r} '
                             'logged (did the run validate during '
                             'training?)')
        curves[name] = curve
    text = format_curves(curves, args.metric)
    out = dict(curves=curves)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        md = osp.join(args.out_dir, 'val_curve.md')
        with open(md, 'w', encoding='utf-8') as f:
            f.write(text)
        out['md'] = md
        out['png'] = plot_curves(curves, args.metric,
                                 osp.join(args.out_dir, 'val_curve.png'))
    print(text)  # after the files: a closed pipe cannot lose them
    return out


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
