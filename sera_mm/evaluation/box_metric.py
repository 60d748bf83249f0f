"""``ReferBoxMetric``: referring expression comprehension accuracy of a
segmentation model, from its masks.

For every expression the predicted box is the tight box of the predicted
mask (:func:`~sera_mm.evaluation.boxes.mask_to_box`; an empty prediction
has no box and counts as a miss) and the ground-truth box is the
annotation's COCO box (the sample's ``bbox`` metainfo, ``[x, y, w, h]`` at
the original resolution, which REFER- and CRIS-layout datasets carry),
or, without one, the tight box of the ground-truth mask. A prediction is
correct at threshold X when the IoU of the two boxes is ``>= X``: the
``Acc@0.5`` of referring expression comprehension as MMDetection's
``RefExpMetric`` counts it (annotation box, IoU >= 0.5, no ``+1`` pixel
terms).

Keys (percent): ``BoxAcc@0.5`` (one per threshold), ``<expr_type>/BoxAcc@X``
when samples carry ``expr_type``, and ``BoxEmpty``, the share of
expressions with an empty predicted mask. Use it beside ``ReferMetric``
(``val_evaluator = [dict(type='ReferMetric'), dict(type='ReferBoxMetric')]``)
or inside ``PerSetMetric``; its keys never clash with ReferMetric's.

Conventions: a sample whose ground truth is empty too (no box on either
side; only generalised no-target expressions) counts as correct, one with a
box on exactly one side as a miss. A horizontally flipped sample (``flip``
metainfo) has its annotation box mirrored to match the flipped masks.
"""
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from sera_mm.registry import METRICS
from .boxes import box_iou, flip_xywh, mask_to_box, xywh_to_xyxy
from .refer_metric import _format, _get, _plain, read_mask_pair

#: One stored result: (box IoU, prediction empty, expr_type, sent_id).
BoxResult = Tuple[float, bool, Optional[str], Any]

GT_BOX_SOURCES = ('auto', 'ann', 'mask')


@METRICS.register_module()
class ReferBoxMetric(BaseMetric):
    """Box accuracy (``BoxAcc@X``, IoU >= X) of boxes taken from the
    predicted masks; see the module docstring.

    Args:
        thresholds: IoU thresholds, each giving ``BoxAcc@X`` (``>= X``).
        gt_box: ``'auto'`` (the annotation box when the sample has one,
            else the ground-truth mask's box), ``'ann'`` (the annotation box;
            a sample without one raises) or ``'mask'`` (always the mask's).
        collect_device, prefix: as :class:`mmengine.evaluator.BaseMetric`.

    Raises:
        ValueError: bad thresholds or ``gt_box``.
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 thresholds: Sequence[float] = (0.5, ),
                 gt_box: str = 'auto',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         **kwargs)
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError('thresholds must be a non-empty sequence of '
                             f'values in (0, 1], got {thresholds}')
        if gt_box not in GT_BOX_SOURCES:
            raise ValueError(f'gt_box must be one of {GT_BOX_SOURCES}, got '
                             f'{gt_box!r}')
        self.thresholds = thresholds
        self.gt_box = gt_box

    def gt_xyxy(self, sample: Any, gt_mask: np.ndarray) -> Optional[list]:
        """The ground-truth box of a sample (see ``gt_box``)."""
        bbox = _get(sample, 'bbox')
        if self.gt_box == 'ann' and bbox is None:
            raise KeyError(f'ReferBoxMetric(gt_box="ann") needs "bbox" (the '
                           f'annotation box [x, y, w, h]) in sample sent_id='
                           f'{_get(sample, "sent_id")!r}')
        if self.gt_box == 'mask' or bbox is None:
            return mask_to_box(gt_mask)
        bbox = [float(v) for v in _plain(bbox)]
        if _get(sample, 'flip') and _get(sample, 'flip_direction') in (
                None, 'horizontal'):
            bbox = flip_xywh(bbox, gt_mask.shape[1])
        return xywh_to_xyxy(bbox)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Box IoU of each sample.

        Raises:
            KeyError: a sample lacks ``pred_sem_seg`` or ``gt_sem_seg`` (or
                ``bbox`` with ``gt_box='ann'``).
            ValueError: prediction and ground truth shapes differ.
        """
        for sample in data_samples:
            sent_id, pred, gt = read_mask_pair(sample, 'ReferBoxMetric')
            pred_box = mask_to_box(pred)
            iou = box_iou(pred_box, self.gt_xyxy(sample, gt))
            expr_type = _get(sample, 'expr_type')
            self.results.append(
                (float(iou), pred_box is None,
                 None if expr_type is None else str(expr_type),
                 _plain(sent_id)))

    def _summary(self, ious: np.ndarray, empty: np.ndarray
                 ) -> 'OrderedDict[str, float]':
        out: 'OrderedDict[str, float]' = OrderedDict()
        for thr in self.thresholds:
            out[f'BoxAcc@{thr}'] = float((ious >= thr).mean() * 100.0) \
                if ious.size else 0.0
        out['BoxEmpty'] = float(empty.mean() * 100.0) if empty.size else 0.0
        return out

    def compute_metrics(self, results: List[BoxResult]) -> Dict[str, float]:
        if not results:
            print_log('ReferBoxMetric: no sample was evaluated; every metric '
                      'is reported as 0.', logger='current',
                      level=logging.WARNING)
        ious = np.array([r[0] for r in results], dtype=np.float64)
        empty = np.array([r[1] for r in results], dtype=bool)
        metrics: Dict[str, float] = dict(self._summary(ious, empty))
        rows = [('all', len(results), dict(metrics))]
        for expr_type in sorted({r[2] for r in results
                                 if r[2] is not None}):
            sel = np.array([r[2] == expr_type for r in results])
            group = self._summary(ious[sel], empty[sel])
            for key, value in group.items():
                if key != 'BoxEmpty':
                    metrics[f'{expr_type}/{key}'] = value
            rows.append((expr_type, int(sel.sum()), dict(group)))
        if results:
            keys = list(rows[0][2])
            lines = ['| expr_type | count | ' + ' | '.join(keys) + ' |',
                     '|' + '|'.join(['---'] * (len(keys) + 2)) + '|']
            for name, count, values in rows:
                lines.append(f'| {name} | {count} | ' + ' | '.join(
                    _format(values[k]) for k in keys) + ' |')
            print_log('\n' + '\n'.join(lines), logger='current')
        return metrics
