"""Evaluation metrics for referring image segmentation (and its
generalised, multi-/no-target form)."""
from .grefer_metric import GReferMetric, gref_summary
from .per_set_metric import PerSetMetric
from .refer_metric import ReferMetric, sample_ious

__all__ = ['ReferMetric', 'sample_ious', 'GReferMetric', 'gref_summary',
           'PerSetMetric']
