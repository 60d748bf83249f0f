"""Evaluation metrics for referring image segmentation."""
from .refer_metric import ReferMetric, sample_ious

__all__ = ['ReferMetric', 'sample_ious']
