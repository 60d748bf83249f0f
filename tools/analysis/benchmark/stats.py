"""The statistics of the benchmark's figures: ratios of two subjects,
the spread of repeated timings, and the per-pair ratios of timings taken
in alternation (whose median does not drift with the machine's speed)."""
import statistics
from typing import Dict, List, Optional, Sequence

import numpy as np


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """``a / b`` or None when either is missing or ``b`` is 0."""
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) \
            or b == 0:
        return None
    return a / b

def spread(values: Sequence[float]) -> Dict[str, float]:
    """``dict(min, median, max)`` of ``values``."""
    return dict(min=min(values), median=statistics.median(values),
                max=max(values))


def pair_ratios(numerators: Sequence[float],
                denominators: Sequence[float]) -> List[float]:
    """``n / d`` of every pair of timings taken in alternation."""
    return [n / d for n, d in zip(numerators, denominators)]


def median(values: Sequence[float]) -> float:
    """The median (the figure reported for repeated timings and for the
    per-pair ratios)."""
    return statistics.median(values)
