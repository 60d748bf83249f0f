"""Paired comparisons of every row with a reference row.

Every row is compared with the reference seed by seed: the run of seed k
against the reference run of seed k (same seed, so the same
initialisation of shared parts and the same data order), on the same
evaluation expressions (joined on ``sent_id`` from the per-expression
IoUs that ``tools/train.py`` writes to ``<work dir>/per_sample/<split>.csv``).

For every seed, the mean paired difference of per-expression IoU (the
mIoU difference, in points) gets a 95% percentile cluster bootstrap
interval (:func:`.stats.cluster_bootstrap_ci`: images resampled with all
their expressions; referred objects or single expressions where the
records carry no image id, see :mod:`.stats`). Across seeds, the mean of
the per-seed differences gets a 95% Student-t interval (n - 1 degrees of
freedom), which includes the training-seed variance; with one seed only
the bootstrap interval exists and it does not include seed variance. A
difference is called real only when its interval excludes zero: the
across-seed interval when there are >= 2 paired seeds, else the bootstrap
interval (marked as such). Everything is reported overall and per
expression type.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .plan import RunSpec, run_status
from .records import effective_seed, read_per_sample
from .stats import (BOOTSTRAP_RESAMPLES, CLUSTER_UNITS, cluster_bootstrap_ci,
                    cluster_ids, cluster_unit, t_interval)

DEFAULT_REFERENCE = 'full'

#: ``(seed, n_expressions, mean, low, high)`` of one seed's comparison.
SeedDiff = Tuple[Any, int, float, float, float]


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
        clusters: ``[(seed, unit, n_clusters)]`` of every seed's
            bootstrap: unit ``'image'``, ``'ref'`` or ``'expression'``.
    """
    row: str
    split: str
    group: str
    per_seed: List[SeedDiff]
    mean: float
    low: float
    high: float
    interval: str
    clusters: List[Tuple[Any, str, int]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """'higher' / 'lower' when the interval excludes 0, else 'n.s.'."""
        if self.low > 0:
            return 'higher'
        if self.high < 0:
            return 'lower'
        return 'n.s.'

    @property
    def units(self) -> List[str]:
        """The cluster units of its bootstraps, coarsest first."""
        seen = {unit for _, unit, _ in self.clusters}
        return [u for u in CLUSTER_UNITS if u in seen]


def _paired_diffs(ours: Dict[str, Any], theirs: Dict[str, Any]
                  ) -> Tuple[str, Dict[str, Tuple[List[float], List[Any]]]]:
    """(cluster unit, ``{group: (differences in points, cluster ids)}``)
    of the expressions both runs evaluated; the ids of an expression are
    taken from the row's record, else from the reference's."""
    common = [sid for sid in ours if sid in theirs]
    records = []
    for sid in common:
        a, b = ours[sid], theirs[sid]
        records.append(a._replace(
            image_id=a.image_id if a.image_id is not None else b.image_id,
            ref_id=a.ref_id if a.ref_id is not None else b.ref_id))
    unit = cluster_unit(records)
    ids = cluster_ids(common, records, unit)
    groups: Dict[str, Tuple[List[float], List[Any]]] = {'all': ([], [])}
    for sid, rec, cid in zip(common, records, ids):
        d = 100.0 * (ours[sid].iou - theirs[sid].iou)
        for group in ('all', rec.expr_type):
            if group is None:
                continue
            diffs, clusters = groups.setdefault(group, ([], []))
            diffs.append(d)
            clusters.append(cid)
    return unit, groups


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
        by_seed.setdefault(run.row, {})[effective_seed(run)] = run
    ref_runs = by_seed.get(reference, {})
    results = []
    for row, seeded in by_seed.items():
        if row == reference:
            continue
        seeds = [k for k in seeded if k in ref_runs]
        seeds.sort(key=lambda k: (k is None, k))
        for split in splits:
            per_group: Dict[str, List[SeedDiff]] = {}
            per_group_clusters: Dict[str, List[Tuple[Any, str, int]]] = {}
            for k in seeds:
                ours = read_per_sample(seeded[k].work_dir, split)
                theirs = read_per_sample(ref_runs[k].work_dir, split)
                if ours is None or theirs is None:
                    continue
                unit, groups = _paired_diffs(ours, theirs)
                for group, (diffs, clusters) in groups.items():
                    if not diffs:
                        continue
                    boot_seed = 0 if k is None else int(k)
                    mean, low, high = cluster_bootstrap_ci(
                        diffs, clusters, resamples, seed=boot_seed)
                    per_group.setdefault(group, []).append(
                        (k, len(diffs), mean, low, high))
                    per_group_clusters.setdefault(group, []).append(
                        (k, unit, len(set(clusters))))
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
                                            mean, low, high, kind,
                                            per_group_clusters[group]))
    return results
