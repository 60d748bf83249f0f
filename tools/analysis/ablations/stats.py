"""Statistics of the ablation tables: the Student-t interval of a mean over
seeds and the cluster bootstrap of a mean over expressions.

**Why clusters.** A referring benchmark evaluates several expressions per
image (and several per referred object): they share the picture, the
object, often the difficulty, so their IoUs (and two models' differences
on them) are correlated. A bootstrap that resamples single expressions
treats them as independent and gives intervals that are too narrow. The
cluster bootstrap resamples *images* with replacement and takes all
expressions of a resampled image together; the statistic of a resample
is the mean over the expressions it holds (so the point estimate is
still the plain mean over expressions, the mIoU difference). With one
expression per cluster it is the ordinary bootstrap, draw for draw; with
clusters of equal size it is the bootstrap of the cluster means.

The cluster is chosen per comparison from what the per-expression
records carry (:func:`cluster_unit`): ``image_id`` when every record has
one, else ``ref_id`` (the referred object: objects nest inside images, so
this leaves out the correlation between the objects of one image and
can be narrower than the image bootstrap), else single expressions (the
old, independent resampling). The reports name the unit used and say
when it is not the image.

The t interval uses ``scipy.stats.t`` (any degrees of freedom).
"""
import math
import statistics
from typing import (Any, Hashable, Iterable, List, Optional, Sequence,
                    Tuple)

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
#: Cluster units from the coarsest; the report names the one used.
CLUSTER_UNITS = ('image', 'ref', 'expression')
#: The unit of a report's plural wording.
CLUSTER_PLURALS = dict(image='images', ref='referred objects',
                       expression='expressions')


def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """(mean, sample standard deviation (n - 1) or None below 2 values)."""
    values = list(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) >= 2 else None
    return mean, std


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided ``level`` Student-t critical value for ``df`` degrees of
    freedom (``scipy.stats.t``)."""
    from scipy.stats import t
    if df < 1:
        raise ValueError(f'df must be >= 1, got {df}')
    return float(t.ppf(0.5 + level / 2, df))


def t_interval(values: Sequence[float],
               level: float = 0.95) -> Tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean (n - 1 df,
    n >= 2)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError('t_interval needs at least two values')
    mean = statistics.fmean(values)
    half = t_quantile(len(values) - 1, level) * statistics.stdev(values) / \
        math.sqrt(len(values))
    return mean, mean - half, mean + half


def cluster_bootstrap_ci(values: Sequence[float],
                         clusters: Optional[Sequence[Hashable]] = None,
                         resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = 0, alpha: float = 0.05
                         ) -> Tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` with a percentile bootstrap
    interval that resamples clusters.

    Args:
        values: one value per expression.
        clusters: the cluster of every value (e.g. its image id); values
            of one cluster are drawn together. None: every value is its
            own cluster.
        resamples: bootstrap resamples.
        seed: seed of the resampling (numpy ``default_rng``).
        alpha: 1 - the interval's level.

    Returns:
        the mean over all values (not over clusters), and the
        ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the resampled
        means; a resample draws as many clusters as there are, with
        replacement, and its mean is over the values it holds.

    Raises:
        ValueError: no values, or ``clusters`` of another length.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError('the bootstrap needs at least one value')
    if clusters is None:
        sums, sizes = v, np.ones_like(v)
    else:
        if len(clusters) != v.size:
            raise ValueError(f'{len(clusters)} cluster ids for {v.size} '
                             'values')
        index = {}
        ids = np.array([index.setdefault(c, len(index)) for c in clusters])
        sums = np.bincount(ids, weights=v, minlength=len(index))
        sizes = np.bincount(ids, minlength=len(index)).astype(np.float64)
    n = sums.size
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        means[start:start + k] = sums[idx].sum(1) / sizes[idx].sum(1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(low), float(high)


def bootstrap_ci(values: Sequence[float],
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 alpha: float = 0.05) -> Tuple[float, float, float]:
    """:func:`cluster_bootstrap_ci` with every value its own cluster (the
    values resampled as if independent)."""
    return cluster_bootstrap_ci(values, None, resamples, seed, alpha)


def cluster_unit(records: Iterable[Any]) -> str:
    """The coarsest cluster every record names: ``'image'`` when all have
    an ``image_id``, else ``'ref'`` when all have a ``ref_id``, else
    ``'expression'``. ``records``: objects with ``image_id`` and
    ``ref_id`` attributes (:class:`.records.SampleRecord`)."""
    records = list(records)
    if records and all(r.image_id is not None for r in records):
        return 'image'
    if records and all(r.ref_id is not None for r in records):
        return 'ref'
    return 'expression'


def cluster_ids(keys: Sequence[Hashable], records: Sequence[Any],
                unit: str) -> List[Hashable]:
    """The cluster of each record for ``unit`` (``keys``: the expressions'
    own ids, the clusters of unit ``'expression'``)."""
    if unit == 'image':
        return [r.image_id for r in records]
    if unit == 'ref':
        return [r.ref_id for r in records]
    if unit == 'expression':
        return list(keys)
    raise ValueError(f'unit must be one of {CLUSTER_UNITS}, got {unit!r}')
