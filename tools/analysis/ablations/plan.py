"""Planning the runs of an ablation table.

``<row>`` is the config file name without ``.py``. Rows named in
``seed_rows`` run once per seed (work dir ``<work-root>/<row>_seed<k>``,
``randomness.seed=k``); the other rows run once at the config's own seed
(work dir ``<work-root>/<row>``).

A run's state follows from its work dir alone: ``'done'`` when it holds
``final_metrics.json`` (skipped), ``'resume'`` when it holds mmengine's
``last_checkpoint`` (restarted with ``--resume``), else ``'new'``.
"""
import os.path as osp
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

#: The repository root (``tools/train.py`` and the configs live there).
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
DEFAULT_CONFIGS = 'configs/sera/ablations/*.py'
METRICS_FILE = 'final_metrics.json'
CHECKPOINT_MARKER = 'last_checkpoint'
#: What the runner does with a run in each state.
ACTIONS = {'done': 'skip (finished)', 'resume': 'resume', 'new': 'run'}


@dataclass
class RunSpec:
    """One training run of the table.

    Attributes:
        row: table row (config name without ``.py``).
        config: config path.
        work_dir: where the run writes.
        seed: ``randomness.seed`` override, or None (the config's seed).
    """
    row: str
    config: str
    work_dir: str
    seed: Optional[int] = None


def row_name(config: str) -> str:
    """Table row of a config: its file name without ``.py``."""
    return osp.splitext(osp.basename(config))[0]


def plan_runs(configs: Sequence[str], work_root: str,
              seeds: Optional[Sequence[int]] = None,
              seed_rows: Sequence[str] = ('full', )) -> List[RunSpec]:
    """Expand configs into runs.

    Args:
        configs: config paths (row names must be unique).
        work_root: parent of the work dirs.
        seeds: seeds for the rows in ``seed_rows``; None or empty: those
            rows run once like the others.
        seed_rows: rows run once per seed.

    Returns:
        runs in config order (seeds in the given order within a row).

    Raises:
        ValueError: two configs share a row name, or a seed repeats.
    """
    rows = [row_name(c) for c in configs]
    dup = sorted({r for r in rows if rows.count(r) > 1})
    if dup:
        raise ValueError(f'configs must have distinct file names (table '
                         f'rows), got duplicates {dup}')
    seeds = [int(s) for s in (seeds or [])]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f'seeds must be distinct, got {seeds}')
    runs = []
    for config, row in zip(configs, rows):
        if seeds and row in seed_rows:
            for seed in seeds:
                runs.append(RunSpec(row, config,
                                    osp.join(work_root, f'{row}_seed{seed}'),
                                    seed))
        else:
            runs.append(RunSpec(row, config, osp.join(work_root, row)))
    return runs


def run_status(work_dir: str) -> str:
    """'done' (metrics written), 'resume' (a checkpoint to resume from) or
    'new'."""
    if osp.isfile(osp.join(work_dir, METRICS_FILE)):
        return 'done'
    if osp.isfile(osp.join(work_dir, CHECKPOINT_MARKER)):
        return 'resume'
    return 'new'


def plan_states(runs: Sequence[RunSpec]) -> List[Tuple[RunSpec, str]]:
    """``[(run, state)]``: the state (:func:`run_status`) of every run, in
    order; the runner skips ``'done'``, resumes ``'resume'`` and starts
    ``'new'``."""
    return [(run, run_status(run.work_dir)) for run in runs]


def train_command(run: RunSpec, splits: Sequence[str],
                  cfg_options: Sequence[str] = (), resume: bool = False,
                  python: str = sys.executable) -> List[str]:
    """The ``tools/train.py`` command line of a run."""
    cmd = [python, osp.join(ROOT, 'tools', 'train.py'), run.config,
           '--work-dir', run.work_dir, '--test-splits', *splits]
    if resume:
        cmd.append('--resume')
    options = list(cfg_options)
    if run.seed is not None:
        options.append(f'randomness.seed={run.seed}')
    if options:
        cmd += ['--cfg-options', *options]
    return cmd
