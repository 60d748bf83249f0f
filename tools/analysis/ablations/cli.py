"""Command line of the ablation runner (``tools/analysis/run_ablations.py``):
plan the runs, train the unfinished ones, write the tables.

    python tools/analysis/run_ablations.py \
        [--configs configs/sera/ablations/*.py] \
        [--seeds 0 1 2] [--seed-rows full] \
        [--work-root work_dirs/ablations] [--splits val testB] \
        [--out docs/ablations] [--dry-run | --table-only] \
        [--cfg-options key=value ...]
"""
import argparse
import glob
import os.path as osp
import sys
from typing import List, Optional, Sequence

from .compare import DEFAULT_REFERENCE, paired_comparisons
from .plan import (ACTIONS, DEFAULT_CONFIGS, ROOT, RunSpec, plan_runs,
                   plan_states, run_status, train_command)
from .report import write_paired, write_tables
from .run import execute_run, fill_missing_params
from .stats import BOOTSTRAP_RESAMPLES


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train/evaluate the ablation configs and tabulate them')
    parser.add_argument('--configs', nargs='+', default=None,
                        help=f'ablation configs (default {DEFAULT_CONFIGS})')
    parser.add_argument('--seeds', nargs='+', type=int, default=None,
                        help='seeds of the --seed-rows (default: one run)')
    parser.add_argument('--seed-rows', nargs='+', default=['full'],
                        help='rows run once per seed (default: full)')
    parser.add_argument('--work-root', default='work_dirs/ablations')
    parser.add_argument('--splits', nargs='+', default=['val', 'testB'])
    parser.add_argument('--out', default='docs/ablations',
                        help='folder of ablations.md / ablations.csv')
    parser.add_argument('--dry-run', action='store_true',
                        help='list the runs and their state; run nothing, '
                        'write nothing')
    parser.add_argument('--table-only', action='store_true',
                        help='run nothing; build the tables from the '
                        'finished runs')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='passed on to tools/train.py of every run')
    parser.add_argument('--python', default=sys.executable,
                        help='interpreter running tools/train.py')
    parser.add_argument('--heartbeat', type=float, default=30.0,
                        help='seconds between wall-time updates of a run')
    parser.add_argument('--reference', default=DEFAULT_REFERENCE,
                        help='row every other row is paired with')
    parser.add_argument('--bootstrap', type=int, default=BOOTSTRAP_RESAMPLES,
                        help='bootstrap resamples of the paired intervals '
                        '(images resampled with all their expressions)')
    return parser.parse_args(argv)


def dry_run(runs: Sequence[RunSpec], args: argparse.Namespace) -> None:
    """Print every run's state and, for the unfinished ones, the command
    that would run."""
    states = plan_states(runs)
    for run, status in states:
        print(f'{run.row:24s} {osp.basename(run.work_dir):28s} '
              f'{ACTIONS[status]}')
        if status != 'done':
            cmd = train_command(run, args.splits, args.cfg_options,
                                status == 'resume', args.python)
            print('    ' + ' '.join(cmd))
    todo = sum(status != 'done' for _, status in states)
    print(f'{len(runs)} runs, {len(runs) - todo} finished, {todo} to go')


def write_reports(runs: Sequence[RunSpec],
                  args: argparse.Namespace) -> List[str]:
    """Write the tables and the paired comparisons; returns their paths."""
    md_path, csv_path = write_tables(runs, args.splits, args.out)
    paired = paired_comparisons(runs, args.splits, args.reference,
                                args.bootstrap)
    pmd, pcsv = write_paired(paired, args.reference, args.out,
                             args.bootstrap)
    return [md_path, csv_path, pmd, pcsv]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    configs = args.configs or sorted(
        glob.glob(osp.join(ROOT, DEFAULT_CONFIGS)))
    if not configs:
        raise FileNotFoundError(f'no ablation configs found '
                                f'({args.configs or DEFAULT_CONFIGS})')
    missing = [c for c in configs if not osp.isfile(c)]
    if missing:
        raise FileNotFoundError(f'configs not found: {missing}')
    runs = plan_runs(configs, args.work_root, args.seeds, args.seed_rows)

    if args.dry_run:
        dry_run(runs, args)
        return 0

    failed = []
    if not args.table_only:
        for run in runs:
            if run_status(run.work_dir) == 'done':  # also by another runner
                print(f'[ablations] {run.row} '
                      f'({osp.basename(run.work_dir)}): finished, skipped')
                continue
            rc = execute_run(run, args.splits, args.cfg_options, args.python,
                             heartbeat=args.heartbeat)
            write_reports(runs, args)  # results so far
            if rc != 0:
                print(f'[ablations] {run.row}: tools/train.py exited with '
                      f'{rc}; going on with the next row', flush=True)
                failed.append(run.work_dir)
    fill_missing_params(runs, args.cfg_options)
    md_path, csv_path, pmd, pcsv = write_reports(runs, args)
    print(f'[ablations] wrote {md_path} and {csv_path}')
    print(f'[ablations] wrote {pmd} and {pcsv}')
    if failed:
        print('[ablations] failed runs: ' + ', '.join(failed))
        return 1
    return 0
