"""``GReferMetric``: generalised referring segmentation metrics (gRefCOCO,
ReLA / GRES, CVPR 2023), at original resolution.

Every expression is either *no-target* (it names nothing: the metainfo
``no_target`` is True, or, without that key, its ground truth is empty) or
*targeted*. A sample is *predicted no-target* when its predicted mask is
empty (a model with a no-target head empties the mask of the samples it
rejects, see :class:`~sera_mm.models.segmentors.SERASegmentor`). For each
sample the predicted and ground-truth masks (binarised ``> 0``) give the
intersection ``I`` and union ``U``. Definitions (all in percent):

- **gIoU**: mean over *all* samples of the per-sample IoU, where a targeted
  sample scores ``I / U`` (1 when ``U == 0``, i.e. an empty ground truth
  predicted empty) and a no-target sample scores 1 when predicted empty and
  0 otherwise (which is again ``I / U`` with the ``U == 0`` convention).
- **cIoU**: ``sum(I) / sum(U)`` over all samples (cumulative intersection
  over cumulative union). A no-target sample adds ``I = 0`` and ``U`` = its
  predicted area: a correct rejection adds nothing, a false mask only to
  the union. A group whose every ``U`` is 0 gets 100.
- **N-acc**: share of no-target samples predicted no-target
  (``TP / (TP + FN)``, no-target being the positive class). Reported only
  when there is a no-target sample.
- **T-acc**: share of targeted samples *not* predicted no-target
  (``TN / (TN + FP)``). Reported only when there is a targeted sample.
- **Prec@X** for X in ``thresholds`` (0.7, 0.8, 0.9): share of *targeted*
  samples with IoU strictly greater than X (as :class:`ReferMetric`).
  Reported only when there is a targeted sample.

Keys: ``gIoU``, ``cIoU``, ``N-acc``, ``T-acc``, ``Prec@0.7``, ...,
``count`` (all samples) and ``no_target_count``; with ``expr_type`` tags the
same per type as ``<type>/gIoU``, ..., ``<type>/count`` (untyped samples
only enter the overall numbers).

Where ReLA's public evaluator (``gres_model/evaluation/refer_evaluation.py``)
and its paper differ, this metric follows the paper's definitions: ReLA's
code divides by ``count + 1`` in N-acc and computes "T-acc" as
``TP / (TP + FP + 1)`` (a precision of the no-target class), and decides
"predicted no-target" from its no-target classifier even when the mask is
not empty; it counts ``IoU >= X`` for Pr@X. Its gIoU (a no-target sample
counts 1 when predicted no-target, 0 otherwise), cIoU accumulation and
Pr@X on targeted samples only are what this metric computes.

Distributed evaluation, as :class:`ReferMetric`: each rank stores one plain
tuple per sample in ``self.results``; mmengine gathers them in dataset order
and drops the sampler's padding, and ``compute_metrics`` only sums and
counts, so the merged lists give exactly the single-process numbers.
"""
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from sera_mm.registry import METRICS
from .refer_metric import _get, _plain, read_mask_pair

#: One stored result: (intersection, union, predicted area, no_target,
#: expr_type, sent_id, ref_id).
GReferResult = Tuple[int, int, int, bool, Optional[str], Any, Any]

DEFAULT_GREF_THRESHOLDS: Tuple[float, ...] = (0.7, 0.8, 0.9)


def gref_summary(results: Sequence[GReferResult],
                 thresholds: Sequence[float]) -> 'OrderedDict[str, float]':
    """gIoU, cIoU, N-acc, T-acc, Prec@X (percent) and counts of a group of
    stored results (see the module doc for the definitions)."""
    out: 'OrderedDict[str, float]' = OrderedDict()
    inter = np.array([r[0] for r in results], dtype=np.int64)
    union = np.array([r[1] for r in results], dtype=np.int64)
    pred_area = np.array([r[2] for r in results], dtype=np.int64)
    no_target = np.array([bool(r[3]) for r in results], dtype=bool)
    pred_empty = pred_area == 0
    ious = np.ones(len(results), dtype=np.float64)
    nonzero = union > 0
    ious[nonzero] = inter[nonzero] / union[nonzero]
    # a no-target sample: 1 if predicted empty (U = 0 then), else 0 (I = 0)
    out['gIoU'] = float(ious.mean() * 100.0) if len(results) else 0.0
    total_u = int(union.sum())
    out['cIoU'] = (float(inter.sum() / total_u * 100.0) if total_u > 0 else
                   (100.0 if len(results) else 0.0))
    if no_target.any():
        out['N-acc'] = float(pred_empty[no_target].mean() * 100.0)
    targeted = ~no_target
    if targeted.any():
        out['T-acc'] = float((~pred_empty[targeted]).mean() * 100.0)
        for thr in thresholds:
            out[f'Prec@{thr}'] = float((ious[targeted] > thr).mean() * 100.0)
    out['count'] = int(len(results))
    out['no_target_count'] = int(no_target.sum())
    return out


@METRICS.register_module()
class GReferMetric(BaseMetric):
    """gIoU / cIoU / N-acc / T-acc / Prec@X for generalised referring
    segmentation (definitions in the module doc).

    Each data sample must hold ``pred_sem_seg.data`` and ``gt_sem_seg.data``,
    both (1, H, W) at the original image resolution (values > 0 are
    foreground); metainfo ``no_target`` (else an empty ground truth means
    no target), ``expr_type``, ``sent_id`` and ``ref_id`` are used when
    present. ``gIoU`` comes first, so ``save_best='auto'`` picks it.

    Args:
        thresholds: IoU thresholds of the ``Prec@X`` keys (strict ``>``).
        collect_device: 'cpu' or 'gpu', where results are gathered.
        prefix: key prefix (default none).
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 thresholds: Sequence[float] = DEFAULT_GREF_THRESHOLDS,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         **kwargs)
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds or any(not 0.0 <= t < 1.0 for t in thresholds):
            raise ValueError('thresholds must be a non-empty sequence of '
                             f'values in [0, 1), got {thresholds}')
        self.thresholds = thresholds

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Count intersection, union and predicted area of each sample.

        Raises:
            KeyError: a sample lacks ``pred_sem_seg`` or ``gt_sem_seg``.
            ValueError: prediction and ground truth shapes differ.
        """
        for sample in data_samples:
            sent_id, pred, gt = read_mask_pair(sample, 'GReferMetric')
            no_target = _get(sample, 'no_target')
            no_target = (not gt.any()) if no_target is None else \
                bool(_plain(no_target))
            expr_type = _get(sample, 'expr_type')
            expr_type = None if expr_type is None else str(expr_type)
            self.results.append(
                (int(np.count_nonzero(pred & gt)),
                 int(np.count_nonzero(pred | gt)),
                 int(np.count_nonzero(pred)), no_target, expr_type,
                 _plain(sent_id), _plain(_get(sample, 'ref_id'))))

    def compute_metrics(self,
                        results: List[GReferResult]) -> Dict[str, float]:
        """Overall and per-expression-type metrics from the gathered
        per-sample tuples."""
        if len(results) == 0:
            print_log('GReferMetric: no sample was evaluated; gIoU and cIoU '
                      'are reported as 0.', logger='current',
                      level=logging.WARNING)
            return dict(gref_summary([], self.thresholds))
        overall = gref_summary(results, self.thresholds)
        metrics: Dict[str, float] = OrderedDict(
            (k, v) for k, v in overall.items()
            if k not in ('count', 'no_target_count'))
        rows = [('all', overall)]
        for expr_type in sorted({r[4] for r in results if r[4] is not None}):
            group = gref_summary([r for r in results if r[4] == expr_type],
                                 self.thresholds)
            for key, value in group.items():
                if key != 'no_target_count':
                    metrics[f'{expr_type}/{key}'] = value
            rows.append((expr_type, group))
        metrics['count'] = overall['count']
        metrics['no_target_count'] = overall['no_target_count']
        print_log('\n' + self.format_table(rows), logger='current')
        return dict(metrics)

    def format_table(self, rows: List[Tuple[str, Dict[str, float]]]) -> str:
        """A Markdown table with one row per group (``all`` first); a metric
        a group does not define is shown as ``-``."""
        keys = ['gIoU', 'cIoU', 'N-acc', 'T-acc'] + [
            f'Prec@{t}' for t in self.thresholds]
        header = ['expr_type', 'count', 'no_target'] + keys
        lines = ['| ' + ' | '.join(header) + ' |',
                 '|' + '|'.join(['---'] * len(header)) + '|']
        for name, values in rows:
            cells = [name, str(values['count']),
                     str(values['no_target_count'])]
            cells += [f'{values[k]:.2f}' if k in values else '-'
                      for k in keys]
            lines.append('| ' + ' | '.join(cells) + ' |')
        return '\n'.join(lines)
