"""Per-row summaries of the finished runs: mean and sample standard
deviation (n - 1) over seeds of every metric column, parameter counts,
wall time and commits; and the seed-variation check between rows."""
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .plan import RunSpec
from .records import (first_commit, load_metrics, load_run_info,
                      total_wall_time)
from .stats import mean_std

OVERALL_METRICS = ('mIoU', 'oIoU', 'Prec@0.5', 'Prec@0.9')
EXPR_TYPES = ('attribute', 'spatial', 'relational', 'ordinal', 'boundary')
SIGNIFICANCE_METRICS = ('mIoU', 'oIoU')
MIN_SEEDS_FOR_TEST = 3


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


def table_columns(splits: Sequence[str]) -> List[str]:
    """Metric columns ``'<split>/<metric>'``: the overall metrics, then the
    mIoU of every expression type, split by split."""
    cols = []
    for split in splits:
        cols += [f'{split}/{m}' for m in OVERALL_METRICS]
        cols += [f'{split}/{t}/mIoU' for t in EXPR_TYPES]
    return cols


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
            metrics = load_metrics(run.work_dir)
            info = load_run_info(run.work_dir)
            if s.trainable_params is None and 'trainable_params' in info:
                s.trainable_params = int(info['trainable_params'])
                s.total_params = info.get('total_params')
            if metrics is None:
                continue
            s.n_done += 1
            s.seeds.append(run.seed)
            commit = first_commit(info)
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
        s.values = {c: mean_std(v) for c, v in collected.items()}
        s.wall_time_s = statistics.fmean(times) if times else None
        summaries.append(s)
    return summaries


def significant_differences(
        summaries: Sequence[RowSummary], splits: Sequence[str],
        metrics: Sequence[str] = SIGNIFICANCE_METRICS,
        min_seeds: int = MIN_SEEDS_FOR_TEST) -> List[str]:
    """Lines naming, for every row with ``>= min_seeds`` finished seeds,
    the other rows whose value differs from its mean by more than twice
    its seed std (per split and metric; a column with fewer than two
    values in the row's runs has no std and is left out)."""
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
                mean, std = ref.values.get(col, (None, None))
                if std is None:  # not measured in two of its runs
                    continue
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
