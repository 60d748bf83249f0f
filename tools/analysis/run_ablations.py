"""Run the ablation table: train + evaluate every ablation config in turn,
then collect the metrics into one Markdown and one CSV table.

    python tools/analysis/run_ablations.py \
        [--configs configs/sera/ablations/*.py] \
        [--seeds 0 1 2] [--seed-rows full] \
        [--work-root work_dirs/ablations] [--splits val testB] \
        [--out docs/ablations] [--dry-run | --table-only] \
        [--cfg-options key=value ...]

Every run is a subprocess::

    python tools/train.py CFG --work-dir <work-root>/<row>[_seed<k>] \
        --test-splits <splits> [--resume] --cfg-options ... [randomness.seed=k]

``<row>`` is the config file name without ``.py``. Rows named in
``--seed-rows`` run once per ``--seeds`` value (work dir ``<row>_seed<k>``,
``randomness.seed=k``); the other rows run once at the config's own seed.

Resumable: a run whose work dir holds ``final_metrics.json`` is skipped; a
run interrupted mid-training (its work dir has mmengine's
``last_checkpoint``) is restarted with ``--resume``. Beside the metrics,
``<work dir>/ablation_run.json`` records the command, the trainable / total
parameter counts and the wall time of every attempt (updated every
``--heartbeat`` seconds while a run is in progress, so the time of an
interrupted attempt is kept). The reported time is the wall time of
``tools/train.py``: training plus the final evaluation of the splits.

The table (``<out>/ablations.md`` and ``<out>/ablations.csv``) has one row
per config: overall mIoU, oIoU, Prec@0.5, Prec@0.9 and the mIoU of every
expression type on each split, trainable parameters, time and the commit
the runs ran at. Rows with several seeds show mean +- sample standard
deviation (n - 1).

Paired comparisons (``<out>/paired.md`` / ``paired.csv``): every row is
compared with the reference row (``--reference``, default ``full``) seed by
seed: the run of seed k against the reference run of seed k (same seed, so
the same initialisation of shared parts and the same data order), on the
same evaluation expressions (joined on ``sent_id`` from the per-expression
IoUs that ``tools/train.py`` writes to ``<work dir>/per_sample/<split>.csv``).
For every seed, the mean paired difference of per-expression IoU (the mIoU
difference, in points) gets a 95% percentile bootstrap interval over
expressions (``--bootstrap`` resamples, fixed seed). Across seeds, the mean
of the per-seed differences gets a 95% Student-t interval (n - 1 degrees of
freedom), which includes the training-seed variance; with one seed only
the bootstrap interval exists and it does not include seed variance. A
difference is called real only when its interval excludes zero: the
across-seed interval when there are >= 2 paired seeds, else the bootstrap
interval (marked as such). Everything is reported overall and per
expression type.
"""
import argparse
import csv
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIGS = 'configs/sera/ablations/*.py'
METRICS_FILE = 'final_metrics.json'
RUN_FILE = 'ablation_run.json'
CHECKPOINT_MARKER = 'last_checkpoint'
OVERALL_METRICS = ('mIoU', 'oIoU', 'Prec@0.5', 'Prec@0.9')
EXPR_TYPES = ('attribute', 'spatial', 'relational', 'ordinal', 'boundary')
SIGNIFICANCE_METRICS = ('mIoU', 'oIoU')
MIN_SEEDS_FOR_TEST = 3
PER_SAMPLE_DIR = 'per_sample'  # as sera_mm.engine.final_evaluation
DEFAULT_REFERENCE = 'full'
BOOTSTRAP_RESAMPLES = 2000


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


@dataclass
class RowSummary:
    """Aggregated results of one table row.

    Attributes:
        row: row name.
        config: config path.
        n_runs: planned runs (seeds) of the row.
        n_done: finished runs (with ``final_metrics.json``).
        seeds: seeds of the finished runs (None entries: config seed).
        values: ``{column: (mean, std or None)}``; ``column`` is
            ``'<split>/<metric>'`` (e.g. ``'val/mIoU'``,
            ``'testB/spatial/mIoU'``); std is None below 2 values.
        trainable_params / total_params: from ``ablation_run.json``.
        wall_time_s: mean wall time per finished run (seconds).
        commits: distinct commits the finished runs ran at (first attempt
            of each run; a resumed run keeps its first commit).
    """
    row: str
    config: str
    n_runs: int
    n_done: int = 0
    seeds: List[Optional[int]] = field(default_factory=list)
    values: Dict[str, Tuple[float, Optional[float]]] = field(
        default_factory=dict)
    trainable_params: Optional[int] = None
    total_params: Optional[int] = None
    wall_time_s: Optional[float] = None
    commits: List[str] = field(default_factory=list)


# ---------------------------------------------------------------- planning
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


# --------------------------------------------------------------- recording
def _read_json(path: str) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_json(data: dict, path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def load_run_info(work_dir: str) -> dict:
    """``ablation_run.json`` of a work dir ({} when absent)."""
    return _read_json(osp.join(work_dir, RUN_FILE)) or {}


def total_wall_time(info: dict) -> Optional[float]:
    """Sum of the wall times of all recorded attempts, or None."""
    attempts = info.get('attempts') or []
    times = [a.get('wall_s') for a in attempts if a.get('wall_s') is not None]
    return float(sum(times)) if times else None


def count_parameters(config: str,
                     cfg_options: Sequence[str] = ()) -> Tuple[int, int]:
    """(trainable, total) parameters of a config's model, built with random
    weights (the counts do not depend on the weights)."""
    if ROOT not in sys.path:  # configs may import ``projects.*`` modules
        sys.path.insert(0, ROOT)
    import sera_mm  # noqa: F401  (mmcv.ops fallback before mmseg)
    from mmengine.config import Config

    from sera_mm.models.utils import count_parameters
    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    from sera_mm.utils.config_utils import random_init_cfg
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    options = parse_cfg_options(cfg_options)
    if options:
        cfg.merge_from_dict(options)
    counts = count_parameters(
        MODELS.build(random_init_cfg(cfg.model, force=True)))
    return counts['trainable'], counts['total']


def parse_cfg_options(options: Sequence[str]) -> dict:
    """``['a.b=1', 'c=[1,2]']`` -> dict, as ``--cfg-options`` parses them."""
    if not options:
        return {}
    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='opts')(None, namespace, list(options))
    return dict(namespace.opts)


def execute_run(run: RunSpec, splits: Sequence[str],
                cfg_options: Sequence[str] = (),
                python: str = sys.executable,
                param_counter: Optional[Callable] = None,
                heartbeat: float = 30.0) -> int:
    """Train + evaluate one run (resuming if possible), recording its wall
    time and parameter counts in ``<work_dir>/ablation_run.json``.

    Args:
        param_counter: ``(config, cfg_options) -> (trainable, total)``;
            default :func:`count_parameters`.

    Returns:
        the exit status of ``tools/train.py`` (0 when already done).
    """
    status = run_status(run.work_dir)
    if status == 'done':
        return 0
    os.makedirs(run.work_dir, exist_ok=True)
    info_path = osp.join(run.work_dir, RUN_FILE)
    info = load_run_info(run.work_dir)
    info.update(row=run.row, config=run.config, seed=run.seed,
                splits=list(splits))
    if 'effective_seed' not in info:
        try:
            info['effective_seed'] = (run.seed if run.seed is not None else
                                      config_seed(run.config))
        except Exception as e:  # pairing falls back to the config later
            print(f'[ablations] {run.row}: seed lookup failed: {e!r}')
    param_counter = param_counter or count_parameters
    if 'trainable_params' not in info:
        try:
            info['trainable_params'], info['total_params'] = param_counter(
                run.config, cfg_options)
        except Exception as e:  # counting must never block the run
            print(f'[ablations] {run.row}: parameter count failed: {e!r}')
    cmd = train_command(run, splits, cfg_options, status == 'resume', python)
    attempt = dict(
        start=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        resumed=status == 'resume', command=cmd, wall_s=0.0,
        returncode=None, commit=git_commit(),
        # CPU threads change float summation order (not the seed's
        # initialisation or data order): recorded with every attempt
        threads=_cpu_threads())
    info.setdefault('attempts', []).append(attempt)
    _write_json(info, info_path)
    print(f'[ablations] {run.row} ({osp.basename(run.work_dir)}): '
          f'{"resuming" if status == "resume" else "starting"}\n  ' +
          ' '.join(cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        while True:
            try:
                rc = proc.wait(timeout=heartbeat)
                break
            except subprocess.TimeoutExpired:
                attempt['wall_s'] = time.monotonic() - start
                _write_json(info, info_path)
    except BaseException:  # Ctrl-C: stop the child, keep the time
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        attempt['wall_s'] = time.monotonic() - start
        attempt['returncode'] = proc.returncode
        _write_json(info, info_path)
        raise
    attempt['wall_s'] = time.monotonic() - start
    attempt['returncode'] = rc
    info['wall_time_s'] = total_wall_time(info)
    _write_json(info, info_path)
    return rc


def _cpu_threads() -> Optional[int]:
    """Threads a run's torch uses: ``OMP_NUM_THREADS`` if set to a number,
    else the CPU count."""
    value = os.environ.get('OMP_NUM_THREADS', '').strip()
    return int(value) if value.isdigit() else os.cpu_count()


def git_commit(root: str = ROOT) -> Optional[str]:
    """``HEAD``'s commit id (``+dirty`` when tracked files differ), or None
    outside a git checkout."""
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root,
                              capture_output=True, text=True, check=True)
        dirty = subprocess.run(['git', 'status', '--porcelain',
                                '--untracked-files=no'], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    commit = head.stdout.strip()
    return commit + ('+dirty' if dirty.stdout.strip() else '')


def config_seed(config: str) -> Optional[int]:
    """``randomness.seed`` of a config, or None."""
    from mmengine.config import Config
    seed = (Config.fromfile(config).get('randomness') or {}).get('seed')
    return None if seed is None else int(seed)


# ------------------------------------------------------ paired statistics
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
         7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131,
         20: 2.086, 30: 2.042}


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t critical value for ``df`` degrees of
    freedom (table values; the next lower tabulated df above 10, 1.96 from
    df > 30)."""
    if df < 1:
        raise ValueError(f'df must be >= 1, got {df}')
    if df > 30:
        return 1.96
    return _T975[max(k for k in _T975 if k <= df)]


def bootstrap_ci(diffs: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0, alpha: float = 0.05
                 ) -> Tuple[float, float, float]:
    """(mean, low, high): the mean of ``diffs`` with a percentile bootstrap
    interval (resampling the entries with replacement)."""
    import numpy as np
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        raise ValueError('bootstrap_ci needs at least one value')
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(1, d.size))
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        idx = rng.integers(0, d.size, size=(n, d.size))
        means[start:start + n] = d[idx].mean(1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(d.mean()), float(low), float(high)


def t_interval(values: Sequence[float]) -> Tuple[float, float, float]:
    """(mean, low, high): 95% Student-t interval of the mean (n >= 2)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError('t_interval needs at least two values')
    mean = statistics.fmean(values)
    half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / \
        math.sqrt(len(values))
    return mean, mean - half, mean + half


def read_per_sample(work_dir: str, split: str) -> Optional[Dict[Any, Tuple[
        float, Optional[str]]]]:
    """``{sent_id: (iou, expr_type)}`` of a finished run's split, from
    ``<work_dir>/per_sample/<split>.csv``; None when the file is absent."""
    path = osp.join(work_dir, PER_SAMPLE_DIR, f'{split}.csv')
    if not osp.isfile(path):
        return None
    out = {}
    with open(path, newline='') as f:
        for rec in csv.DictReader(f):
            out[rec['sent_id']] = (float(rec['iou']),
                                   rec.get('expr_type') or None)
    return out


@dataclass
class PairedResult:
    """One paired comparison of a row with the reference.

    Attributes:
        row / split / group: what is compared (group ``'all'`` or a type).
        per_seed: ``[(seed, n_expressions, mean, low, high)]``, mIoU
            difference in points with its bootstrap interval.
        mean / low / high: across seeds (t interval) with >= 2 seeds, else
            the single seed's bootstrap interval.
        interval: 't' or 'bootstrap'.
    """
    row: str
    split: str
    group: str
    per_seed: List[Tuple[Any, int, float, float, float]]
    mean: float
    low: float
    high: float
    interval: str

    @property
    def verdict(self) -> str:
        """'higher' / 'lower' when the interval excludes 0, else 'n.s.'."""
        if self.low > 0:
            return 'higher'
        if self.high < 0:
            return 'lower'
        return 'n.s.'


def _effective_seed(run: RunSpec) -> Optional[int]:
    if run.seed is not None:
        return run.seed
    info = load_run_info(run.work_dir)
    if info.get('effective_seed') is not None:
        return int(info['effective_seed'])
    try:
        return config_seed(run.config)
    except Exception:  # an unreadable config: cannot pair it
        return None


def paired_comparisons(runs: Sequence[RunSpec], splits: Sequence[str],
                       reference: str = DEFAULT_REFERENCE,
                       resamples: int = BOOTSTRAP_RESAMPLES
                       ) -> List[PairedResult]:
    """Compare every row with ``reference`` seed by seed (see the module
    docstring). Rows without a finished run of a seed the reference also
    has are left out; so are groups with no paired expression."""
    by_seed: Dict[str, Dict[Optional[int], RunSpec]] = {}
    for run in runs:
        if run_status(run.work_dir) != 'done':
            continue
        by_seed.setdefault(run.row, {})[_effective_seed(run)] = run
    ref_runs = by_seed.get(reference, {})
    results = []
    for row, seeded in by_seed.items():
        if row == reference:
            continue
        seeds = [k for k in seeded if k in ref_runs]
        seeds.sort(key=lambda k: (k is None, k))
        for split in splits:
            per_group: Dict[str, List[Tuple[Any, int, float, float,
                                            float]]] = {}
            for k in seeds:
                ours = read_per_sample(seeded[k].work_dir, split)
                theirs = read_per_sample(ref_runs[k].work_dir, split)
                if ours is None or theirs is None:
                    continue
                common = [sid for sid in ours if sid in theirs]
                groups: Dict[str, List[float]] = {'all': []}
                for sid in common:
                    d = 100.0 * (ours[sid][0] - theirs[sid][0])
                    groups['all'].append(d)
                    if ours[sid][1] is not None:
                        groups.setdefault(ours[sid][1], []).append(d)
                for group, diffs in groups.items():
                    if not diffs:
                        continue
                    seed_for_boot = 0 if k is None else int(k)
                    mean, low, high = bootstrap_ci(diffs, resamples,
                                                   seed=seed_for_boot)
                    per_group.setdefault(group, []).append(
                        (k, len(diffs), mean, low, high))
            order = ['all'] + sorted(g for g in per_group if g != 'all')
            for group in order:
                if group not in per_group:
                    continue
                entries = per_group[group]
                if len(entries) >= 2:
                    mean, low, high = t_interval([e[2] for e in entries])
                    kind = 't'
                else:
                    _, _, mean, low, high = entries[0]
                    kind = 'bootstrap'
                results.append(PairedResult(row, split, group, entries,
                                            mean, low, high, kind))
    return results


def format_paired_md(results: Sequence[PairedResult], reference: str,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> str:
    """Markdown: per split, one table of overall differences and one of
    per-type differences."""
    out = [f'# Paired differences from `{reference}`', '',
           f'mIoU difference (row minus `{reference}`, points) on the same '
           'expressions, seed by seed. Per seed: the mean difference with a '
           f'95% bootstrap interval over expressions ({resamples} '
           'resamples). Across seeds: the mean of the per-seed differences '
           'with a 95% t interval (n - 1 df); with one seed, the bootstrap '
           'interval (which leaves out seed variance; marked `boot`). '
           'Verdict: `higher`/`lower` only when the interval excludes 0.',
           '']
    splits = []
    for r in results:
        if r.split not in splits:
            splits.append(r.split)

    def _cell(mean, low, high):
        return f'{mean:+.2f} [{low:+.2f}, {high:+.2f}]'

    for split in splits:
        rows = [r for r in results if r.split == split]
        out += [f'## {split}', '',
                '| row | seeds | per seed | mean [95% CI] | verdict |',
                '|---|---|---|---|---|']
        for r in rows:
            if r.group != 'all':
                continue
            per = '; '.join(f's{k}: {_cell(m, lo, hi)}'
                            for k, _, m, lo, hi in r.per_seed)
            tag = '' if r.interval == 't' else ' (boot)'
            out.append(f'| {r.row} | {len(r.per_seed)} | {per} | '
                       f'{_cell(r.mean, r.low, r.high)}{tag} | '
                       f'{r.verdict} |')
        types = sorted({r.group for r in rows if r.group != 'all'})
        if types:
            out += ['', f'Per expression type ({split}): mean [95% CI], '
                    'verdict.', '',
                    '| row | ' + ' | '.join(types) + ' |',
                    '|---|' + '---|' * len(types)]
            for row in dict.fromkeys(r.row for r in rows):
                cells = []
                for t in types:
                    hit = [r for r in rows if r.row == row and r.group == t]
                    if not hit:
                        cells.append('-')
                        continue
                    r = hit[0]
                    mark = {'higher': ' ↑', 'lower': ' ↓', 'n.s.': ''}[
                        r.verdict]
                    cells.append(_cell(r.mean, r.low, r.high) + mark)
                out.append(f'| {row} | ' + ' | '.join(cells) + ' |')
        out.append('')
    if not results:
        out.append('No paired runs finished yet.')
    return '\n'.join(out) + '\n'


def write_paired(results: Sequence[PairedResult], reference: str,
                 out_dir: str, resamples: int = BOOTSTRAP_RESAMPLES
                 ) -> Tuple[str, str]:
    """Write ``<out_dir>/paired.md`` and ``paired.csv``."""
    os.makedirs(out_dir, exist_ok=True)
    md_path = osp.join(out_dir, 'paired.md')
    csv_path = osp.join(out_dir, 'paired.csv')
    with open(md_path, 'w') as f:
        f.write(format_paired_md(results, reference, resamples))
    with open(csv_path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['row', 'split', 'group', 'seeds', 'mean', 'low',
                         'high', 'interval', 'verdict', 'per_seed'])
        for r in results:
            writer.writerow([
                r.row, r.split, r.group, len(r.per_seed), round(r.mean, 4),
                round(r.low, 4), round(r.high, 4), r.interval, r.verdict,
                ' '.join(f'{k}:{n}:{m:.4f}:{lo:.4f}:{hi:.4f}'
                         for k, n, m, lo, hi in r.per_seed)])
    return md_path, csv_path


# ----------------------------------------------------------------- tables
def table_columns(splits: Sequence[str]) -> List[str]:
    """Metric columns ``'<split>/<metric>'``: the overall metrics, then the
    mIoU of every expression type, split by split."""
    cols = []
    for split in splits:
        cols += [f'{split}/{m}' for m in OVERALL_METRICS]
        cols += [f'{split}/{t}/mIoU' for t in EXPR_TYPES]
    return cols


def _mean_std(values: List[float]) -> Tuple[float, Optional[float]]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) >= 2 else None
    return mean, std


def summarize(runs: Sequence[RunSpec],
              splits: Sequence[str]) -> List[RowSummary]:
    """Read the finished runs and aggregate them per row (mean and sample
    std over seeds); rows keep the order of ``runs``."""
    by_row: Dict[str, List[RunSpec]] = {}
    for run in runs:
        by_row.setdefault(run.row, []).append(run)
    summaries = []
    for row, row_runs in by_row.items():
        s = RowSummary(row=row, config=row_runs[0].config,
                       n_runs=len(row_runs))
        collected: Dict[str, List[float]] = {}
        times = []
        for run in row_runs:
            metrics = _read_json(osp.join(run.work_dir, METRICS_FILE))
            info = load_run_info(run.work_dir)
            if s.trainable_params is None and 'trainable_params' in info:
                s.trainable_params = int(info['trainable_params'])
                s.total_params = info.get('total_params')
            if metrics is None:
                continue
            s.n_done += 1
            s.seeds.append(run.seed)
            commit = next((a.get('commit') for a in info.get('attempts', [])
                           if a.get('commit')), None)
            if commit and commit not in s.commits:
                s.commits.append(commit)
            wall = total_wall_time(info)
            if wall is not None:
                times.append(wall)
            for split in splits:
                split_metrics = metrics.get(split) or {}
                for col in table_columns([split]):
                    key = col[len(split) + 1:]
                    if split_metrics.get(key) is not None:
                        collected.setdefault(col, []).append(
                            float(split_metrics[key]))
        s.values = {c: _mean_std(v) for c, v in collected.items()}
        s.wall_time_s = statistics.fmean(times) if times else None
        summaries.append(s)
    return summaries


def significant_differences(
        summaries: Sequence[RowSummary], splits: Sequence[str],
        metrics: Sequence[str] = SIGNIFICANCE_METRICS,
        min_seeds: int = MIN_SEEDS_FOR_TEST) -> List[str]:
    """Lines naming, for every row with ``>= min_seeds`` finished seeds,
    the other rows whose value differs from its mean by more than twice
    its seed std (per split and metric)."""
    lines = []
    for ref in summaries:
        if ref.n_runs < 2:
            continue  # not a seed row
        if ref.n_done < min_seeds:
            lines.append(f'Seed check vs `{ref.row}`: needs {min_seeds} '
                         f'finished seeds, have {ref.n_done}.')
            continue
        parts = []
        for split in splits:
            for metric in metrics:
                col = f'{split}/{metric}'
                if col not in ref.values:
                    continue
                mean, std = ref.values[col]
                hits = []
                for other in summaries:
                    if other is ref or col not in other.values:
                        continue
                    diff = other.values[col][0] - mean
                    if abs(diff) > 2 * std:
                        hits.append(f'{other.row} ({diff:+.2f})')
                parts.append(f'{col} (std {std:.2f}): ' +
                             (', '.join(hits) if hits else 'none'))
        lines.append(f'Rows differing from `{ref.row}` (mean of '
                     f'{ref.n_done} seeds) by more than 2x its seed std: ' +
                     '; '.join(parts) + '.')
    return lines


def _fmt_value(value: Optional[Tuple[float, Optional[float]]]) -> str:
    if value is None:
        return '-'
    mean, std = value
    return f'{mean:.2f}' if std is None else f'{mean:.2f} ± {std:.2f}'


def _fmt_params(n: Optional[int]) -> str:
    if n is None:
        return '-'
    return f'{n / 1e6:.2f}M' if n >= 1e5 else str(n)


def _fmt_minutes(seconds: Optional[float]) -> str:
    return '-' if seconds is None else f'{seconds / 60:.1f}'


def format_markdown(summaries: Sequence[RowSummary],
                    splits: Sequence[str]) -> str:
    """One Markdown table per split (rows = configs), then the seed line."""
    out = ['# Ablations', '',
           'Metrics in percent; rows with several seeds show mean ± sample '
           'std. Per-type columns are mIoU. Time: wall minutes of '
           '`tools/train.py` (training + final evaluation), mean per run.',
           '']
    head = (['row', 'runs'] + list(OVERALL_METRICS) + list(EXPR_TYPES) +
            ['trainable', 'time (min)', 'commit'])
    for split in splits:
        out += [f'## {split}', '', '| ' + ' | '.join(head) + ' |',
                '|' + '---|' * len(head)]
        for s in summaries:
            cells = [s.row, f'{s.n_done}/{s.n_runs}']
            cells += [_fmt_value(s.values.get(f'{split}/{m}'))
                      for m in OVERALL_METRICS]
            cells += [_fmt_value(s.values.get(f'{split}/{t}/mIoU'))
                      for t in EXPR_TYPES]
            cells += [_fmt_params(s.trainable_params),
                      _fmt_minutes(s.wall_time_s),
                      ' '.join(c[:7] + ('+' if c.endswith('+dirty') else '')
                               for c in s.commits) or '-']
            out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')
    lines = significant_differences(summaries, splits)
    if lines:
        out += ['## Seed variation', ''] + lines + ['']
    return '\n'.join(out)


def csv_rows(summaries: Sequence[RowSummary],
             splits: Sequence[str]) -> Tuple[List[str], List[dict]]:
    """(header, rows) of the CSV: raw numbers, a ``<col>_std`` column beside
    every metric (empty without several seeds)."""
    header = ['row', 'config', 'runs', 'done', 'seeds', 'trainable_params',
              'total_params', 'wall_time_min', 'commits']
    for col in table_columns(splits):
        header += [col, f'{col}_std']
    rows = []
    for s in summaries:
        r = dict(row=s.row, config=s.config, runs=s.n_runs, done=s.n_done,
                 seeds=' '.join('cfg' if x is None else str(x)
                                for x in s.seeds),
                 trainable_params='' if s.trainable_params is None else
                 s.trainable_params,
                 total_params='' if s.total_params is None else
                 s.total_params,
                 wall_time_min='' if s.wall_time_s is None else
                 round(s.wall_time_s / 60, 3),
                 commits=' '.join(s.commits))
        for col in table_columns(splits):
            mean, std = s.values.get(col, (None, None))
            r[col] = '' if mean is None else round(mean, 4)
            r[f'{col}_std'] = '' if std is None else round(std, 4)
        rows.append(r)
    return header, rows


def write_tables(runs: Sequence[RunSpec], splits: Sequence[str],
                 out_dir: str) -> Tuple[str, str]:
    """Summarise ``runs`` and write ``<out_dir>/ablations.md`` and
    ``ablations.csv``; returns their paths."""
    summaries = summarize(runs, splits)
    os.makedirs(out_dir, exist_ok=True)
    md_path = osp.join(out_dir, 'ablations.md')
    csv_path = osp.join(out_dir, 'ablations.csv')
    with open(md_path, 'w') as f:
        f.write(format_markdown(summaries, splits))
    header, rows = csv_rows(summaries, splits)
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return md_path, csv_path


def fill_missing_params(runs: Sequence[RunSpec],
                        cfg_options: Sequence[str] = (),
                        param_counter: Optional[Callable] = None) -> None:
    """Record parameter counts for finished runs whose
    ``ablation_run.json`` lacks them (e.g. runs made by hand);
    ``param_counter`` defaults to :func:`count_parameters`."""
    param_counter = param_counter or count_parameters
    counted: Dict[str, Tuple[int, int]] = {}
    for run in runs:
        if run_status(run.work_dir) != 'done':
            continue
        info = load_run_info(run.work_dir)
        if 'trainable_params' in info:
            continue
        if run.config not in counted:
            counted[run.config] = param_counter(run.config, cfg_options)
        info.update(row=run.row, config=run.config, seed=run.seed)
        info['trainable_params'], info['total_params'] = counted[run.config]
        _write_json(info, osp.join(run.work_dir, RUN_FILE))


# -------------------------------------------------------------------- CLI
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
                        help='bootstrap resamples of the paired intervals')
    return parser.parse_args(argv)


def main(argv=None) -> int:
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
        for run in runs:
            status = run_status(run.work_dir)
            action = {'done': 'skip (finished)', 'resume': 'resume',
                      'new': 'run'}[status]
            print(f'{run.row:24s} {osp.basename(run.work_dir):28s} {action}')
            if status != 'done':
                cmd = train_command(run, args.splits, args.cfg_options,
                                    status == 'resume', args.python)
                print('    ' + ' '.join(cmd))
        todo = sum(run_status(r.work_dir) != 'done' for r in runs)
        print(f'{len(runs)} runs, {len(runs) - todo} finished, {todo} to go')
        return 0

    failed = []
    if not args.table_only:
        for run in runs:
            if run_status(run.work_dir) == 'done':
                print(f'[ablations] {run.row} '
                      f'({osp.basename(run.work_dir)}): finished, skipped')
                continue
            rc = execute_run(run, args.splits, args.cfg_options, args.python,
                             heartbeat=args.heartbeat)
            write_tables(runs, args.splits, args.out)  # results so far
            write_paired(paired_comparisons(runs, args.splits,
                                            args.reference, args.bootstrap),
                         args.reference, args.out, args.bootstrap)
            if rc != 0:
                print(f'[ablations] {run.row}: tools/train.py exited with '
                      f'{rc}; going on with the next row', flush=True)
                failed.append(run.work_dir)
    fill_missing_params(runs, args.cfg_options)
    md_path, csv_path = write_tables(runs, args.splits, args.out)
    print(f'[ablations] wrote {md_path} and {csv_path}')
    paired = paired_comparisons(runs, args.splits, args.reference,
                                args.bootstrap)
    pmd, pcsv = write_paired(paired, args.reference, args.out,
                             args.bootstrap)
    print(f'[ablations] wrote {pmd} and {pcsv}')
    if failed:
        print('[ablations] failed runs: ' + ', '.join(failed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
