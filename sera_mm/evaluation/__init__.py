"""Evaluation metrics for referring image segmentation (and its
generalised, multi-/no-target form)."""
from .box_metric import ReferBoxMetric
from .boxes import box_iou, mask_to_box
from .grefer_metric import GReferMetric, gref_summary
from .per_set_metric import PerSetMetric
from .refer_metric import ReferMetric, sample_ious

__all__ = ['ReferMetric', 'sample_ious', 'GReferMetric', 'gref_summary',
           'PerSetMetric', 'ReferBoxMetric', 'mask_to_box', 'box_iou']
