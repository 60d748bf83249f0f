"""``ReferMetric``: referring-segmentation metrics at original resolution.

For every expression the predicted and ground-truth masks (both at the
image's original size) are binarised (``> 0``) and their intersection ``I``
and union ``U`` counted. From those:

- ``mIoU``: mean over expressions of ``I / U`` (the "IoU" of CRIS-style
  papers), in percent;
- ``oIoU``: ``sum(I) / sum(U)`` over all expressions (the "overall IoU" of
  LAVT-style papers), in percent;
- ``Prec@X`` for X in ``thresholds``: percentage of expressions whose IoU is
  *strictly* greater than X (an IoU of exactly 0.5 does not count for
  ``Prec@0.5``).

That is the CRIS / ETRIS / DETRIS protocol (the default,
``protocol='cris'``). ``protocol='lavt'`` follows LAVT instead: threshold
0.5 on resized logits, the ground truth resized to the same square, and
``Prec@X`` counting ``IoU >= X`` (see :class:`ReferMetric`).

When the samples carry ``expr_type`` the same numbers are reported per type
as ``<type>/mIoU``, ``<type>/oIoU``, ``<type>/Prec@0.5``, ... plus
``<type>/count``. Samples without a type only enter the overall numbers.

Conventions:

- An expression whose ground truth *and* prediction are both empty
  (``U == 0``) has IoU 1.0 (a perfect answer). Referring datasets never have
  an empty ground truth, so this only matters for synthetic edge cases. Such
  a sample adds 0 to both sums of ``oIoU``; a group whose samples all have
  ``U == 0`` gets ``oIoU`` 100.
- ``evaluate`` with no processed sample logs a warning and returns every
  overall key with value 0.0 (and no per-type keys) rather than raising, so
  a run with an empty split does not crash at the end of an epoch.

Distributed evaluation: each rank stores one plain tuple per sample in
``self.results``; mmengine's :meth:`BaseMetric.evaluate` gathers the lists
from all ranks (``collect_device='cpu'``) in dataset order and truncates
them to the dataset size, which drops the duplicate samples that
``DefaultSampler`` pads onto the last ranks. ``compute_metrics`` only sums and
counts, so merging the per-rank lists gives exactly the single-process
numbers.
"""
import csv
import io
import json
import logging
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from sera_mm.utils.file_io import atomic_write_bytes
from sera_mm.registry import METRICS

#: One stored result: (intersection, union, expr_type, sent_id, ref_id,
#: image_id).
ReferResult = Tuple[int, int, Optional[str], Any, Any, Any]

DEFAULT_THRESHOLDS: Tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


def _get(sample: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a dict (what the Evaluator passes) or a data
    element (``SegDataSample``, whose metainfo is reachable as attributes)."""
    if isinstance(sample, dict):
        return sample.get(key, default)
    if hasattr(sample, 'metainfo') and key in sample.metainfo:
        return sample.metainfo[key]
    return getattr(sample, key, default)


def _mask_data(sample: Any, field: str) -> Optional[Any]:
    """``sample[field]['data']`` (or ``sample.field.data``), or None."""
    value = _get(sample, field)
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get('data')
    return getattr(value, 'data', None)


def _to_numpy_2d(mask: Any, name: str, sent_id: Any) -> np.ndarray:
    """A (1, H, W) or (H, W) tensor/array as an (H, W) numpy array."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f'{name} of sample sent_id={sent_id!r} must have '
                         f'shape (1, H, W) or (H, W), got {mask.shape}')
    return mask


def _format(value: Any) -> str:
    return f'{value:.2f}' if isinstance(value, float) else str(value)


def _summarise(ious: np.ndarray, inter: int, union: int,
               thresholds: Sequence[float],
               inclusive: bool = False) -> 'OrderedDict[str, float]':
    """mIoU, oIoU and Prec@X (percent) of one group of samples; Prec@X
    counts ``IoU > X`` (``>= X`` when ``inclusive``)."""
    out: 'OrderedDict[str, float]' = OrderedDict()
    if ious.size == 0:
        out['mIoU'] = 0.0
        out['oIoU'] = 0.0
        for thr in thresholds:
            out[f'Prec@{thr}'] = 0.0
        return out
    out['mIoU'] = float(ious.mean() * 100.0)
    out['oIoU'] = float(inter / union * 100.0) if union > 0 else 100.0
    for thr in thresholds:
        hit = ious >= thr if inclusive else ious > thr
        out[f'Prec@{thr}'] = float(hit.mean() * 100.0)
    return out


@METRICS.register_module()
class ReferMetric(BaseMetric):
    """mIoU / oIoU / Prec@X for referring image segmentation.

    Each data sample must hold ``pred_sem_seg.data`` and ``gt_sem_seg.data``,
    both (1, H, W) at the original image resolution (values > 0 are
    foreground); metainfo ``sent_id``, ``ref_id``, ``image_id`` and
    ``expr_type`` are used when present. Keys have no prefix: ``mIoU``, ``oIoU``, ``Prec@0.5``, ...,
    ``<expr_type>/mIoU``, ..., ``<expr_type>/count``, and ``count`` (the
    number of evaluated expressions; last, so ``save_best='auto'`` still
    picks ``mIoU``).

    Args:
        thresholds: IoU thresholds of the ``Prec@X`` keys (strict ``>``).
        output_file: when given, ``compute_metrics`` writes the per-sample
            IoUs and the summary there (atomically). ``*.csv`` gives a CSV of
            ``sent_id, ref_id, image_id, expr_type, intersection, union,
            iou`` (the image is what the paired comparisons' bootstrap
            resamples) plus a ``<stem>_summary.json`` beside it; any other name gives JSON lines
            (one object per sample, then ``{"summary": {...}}``).
        collect_device: 'cpu' or 'gpu', where results are gathered.
        prefix: key prefix (default none, so keys are exactly ``mIoU`` ...).
        protocol: ``'cris'`` (default; CRIS / ETRIS / DETRIS): the model's
            binary prediction (its own threshold, 0.35 for SERA-MM's
            heads) against the ground truth at the image's original
            resolution, ``Prec@X`` strict (``IoU > X``). ``'lavt'`` (LAVT,
            CARIS): the prediction is ``sigmoid(seg_logits) > 0.5`` (LAVT's
            argmax over two classes) after the logits are resized
            bilinearly to ``lavt_size`` x ``lavt_size`` and the ground
            truth nearest to the same square (LAVT evaluates on its
            480 x 480 resized inputs), and ``Prec@X`` counts ``IoU >= X``.
            Needs ``seg_logits`` in the samples (the segmentor keeps them).
        lavt_size: the square size of the ``'lavt'`` protocol (480).
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 output_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 protocol: str = 'cris',
                 lavt_size: int = 480,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         **kwargs)
        if protocol not in ('cris', 'lavt'):
            raise ValueError(f"protocol must be 'cris' or 'lavt', got "
                             f'{protocol!r}')
        if not isinstance(lavt_size, int) or lavt_size < 1:
            raise ValueError(f'lavt_size must be a positive int, got '
                             f'{lavt_size!r}')
        self.protocol = protocol
        self.lavt_size = lavt_size
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds or any(not 0.0 <= t < 1.0 for t in thresholds):
            raise ValueError('thresholds must be a non-empty sequence of '
                             f'values in [0, 1), got {thresholds}')
        self.thresholds = thresholds
        self.output_file = output_file

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Count intersection and union of each sample.

        Args:
            data_batch: the batch from the dataloader (unused).
            data_samples: predictions as dicts (what mmengine's Evaluator
                passes) or ``SegDataSample``s.

        Raises:
            KeyError: a sample lacks ``pred_sem_seg`` or ``gt_sem_seg``.
            ValueError: prediction and ground truth shapes differ.
        """
        for sample in data_samples:
            if self.protocol == 'lavt':
                sent_id, pred, gt = read_lavt_pair(sample, self.lavt_size)
            else:
                sent_id, pred, gt = read_mask_pair(sample, 'ReferMetric')
            inter = int(np.count_nonzero(pred & gt))
            union = int(np.count_nonzero(pred | gt))
            expr_type = _get(sample, 'expr_type')
            expr_type = None if expr_type is None else str(expr_type)
            self.results.append(
                (inter, union, expr_type, _plain(sent_id),
                 _plain(_get(sample, 'ref_id')),
                 _plain(_get(sample, 'image_id'))))

    def compute_metrics(self, results: List[ReferResult]) -> Dict[str, float]:
        """Overall and per-expression-type metrics (percent) from the
        gathered per-sample tuples."""
        if len(results) == 0:
            print_log('ReferMetric: no sample was evaluated; every metric is '
                      'reported as 0.', logger='current',
                      level=logging.WARNING)
            metrics = dict(_summarise(np.zeros(0), 0, 0, self.thresholds,
                                      self.protocol == 'lavt'))
            metrics['count'] = 0
            return metrics
        inters = np.array([r[0] for r in results], dtype=np.int64)
        unions = np.array([r[1] for r in results], dtype=np.int64)
        ious = sample_ious(inters, unions)
        inclusive = self.protocol == 'lavt'
        metrics: Dict[str, float] = dict(
            _summarise(ious, int(inters.sum()), int(unions.sum()),
                       self.thresholds, inclusive))
        rows = [('all', len(results), dict(metrics))]
        types = sorted({r[2] for r in results if r[2] is not None})
        for expr_type in types:
            sel = np.array([r[2] == expr_type for r in results])
            group = _summarise(ious[sel], int(inters[sel].sum()),
                               int(unions[sel].sum()), self.thresholds,
                               inclusive)
            for key, value in group.items():
                metrics[f'{expr_type}/{key}'] = value
            metrics[f'{expr_type}/count'] = int(sel.sum())
            rows.append((expr_type, int(sel.sum()), dict(group)))
        metrics['count'] = len(results)  # evaluated expressions
        print_log('\n' + self.format_table(rows), logger='current')
        if self.output_file:
            self.write_output(results, ious, metrics)
        return metrics

    def format_table(self, rows: List[Tuple[str, int, Dict[str, float]]]
                     ) -> str:
        """A Markdown table with one row per group (``all`` first)."""
        keys = list(rows[0][2].keys())
        header = ['expr_type', 'count'] + keys
        lines = ['| ' + ' | '.join(header) + ' |',
                 '|' + '|'.join(['---'] * len(header)) + '|']
        for name, count, values in rows:
            cells = [name, str(count)] + [_format(values[k]) for k in keys]
            lines.append('| ' + ' | '.join(cells) + ' |')
        return '\n'.join(lines)

    def write_output(self, results: List[ReferResult], ious: np.ndarray,
                     metrics: Dict[str, float]) -> None:
        """Write per-sample IoUs and the summary to ``self.output_file``."""
        path = str(self.output_file)
        records = [
            OrderedDict(sent_id=r[3], ref_id=r[4],
                        image_id=r[5] if len(r) > 5 else None,
                        expr_type=r[2],
                        intersection=r[0], union=r[1], iou=float(iou))
            for r, iou in zip(results, ious)
        ]
        if path.lower().endswith('.csv'):
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(records[0].keys()))
            writer.writeheader()
            writer.writerows(records)
            atomic_write_bytes(buf.getvalue().encode('utf-8'), path)
            summary_path = osp.splitext(path)[0] + '_summary.json'
            atomic_write_bytes(
                json.dumps(metrics, indent=1).encode('utf-8'), summary_path)
        else:
            lines = [json.dumps(rec) for rec in records]
            lines.append(json.dumps({'summary': metrics}))
            atomic_write_bytes(('\n'.join(lines) + '\n').encode('utf-8'),
                               path)
        print_log(f'ReferMetric: wrote {len(records)} per-sample IoUs to '
                  f'{path}', logger='current')


def _required_maps(sample: Any, fields: Sequence[str], metric: str
                   ) -> Tuple[Any, List[np.ndarray]]:
    """``(sent_id, [(H, W) array of each field])``.

    Raises:
        KeyError: a field is missing (naming ``metric``, the field and the
            sample).
    """
    sent_id = _get(sample, 'sent_id')
    maps = []
    for field in fields:
        data = _mask_data(sample, field)
        if data is None:
            raise KeyError(f'{metric} needs "{field}" with "data" in sample '
                           f'sent_id={sent_id!r}')
        maps.append(_to_numpy_2d(data, field, sent_id))
    return sent_id, maps


def read_mask_pair(sample: Any, metric: str
                   ) -> Tuple[Any, np.ndarray, np.ndarray]:
    """``(sent_id, pred, gt)`` of one evaluated sample, both boolean (H, W)
    masks at the original resolution.

    Raises:
        KeyError: ``pred_sem_seg`` or ``gt_sem_seg`` is missing (the
            message names ``metric`` and the sample).
        ValueError: their shapes differ.
    """
    sent_id, (pred, gt) = _required_maps(sample, ('pred_sem_seg',
                                                 'gt_sem_seg'), metric)
    pred, gt = pred > 0, gt > 0
    if pred.shape != gt.shape:
        raise ValueError(
            f'sample sent_id={sent_id!r}: pred_sem_seg shape '
            f'{tuple(pred.shape)} does not match gt_sem_seg shape '
            f'{tuple(gt.shape)}; both must be at the original image '
            'resolution')
    return sent_id, pred, gt


def read_lavt_pair(sample: Any, size: int
                   ) -> Tuple[Any, np.ndarray, np.ndarray]:
    """``(sent_id, pred, gt)`` under LAVT's protocol: ``seg_logits``
    resized bilinearly to (size, size) and thresholded at probability 0.5,
    the ground truth resized (nearest) to the same square.

    Raises:
        KeyError: ``seg_logits`` or ``gt_sem_seg`` is missing.
    """
    sent_id, (logits, gt) = _required_maps(
        sample, ('seg_logits', 'gt_sem_seg'), 'ReferMetric(protocol="lavt")')
    logits = torch.as_tensor(logits.astype(np.float32))
    gt = torch.as_tensor((gt > 0).astype(np.float32))
    logits = torch.nn.functional.interpolate(
        logits[None, None], size=(size, size), mode='bilinear',
        align_corners=False)[0, 0]
    # PIL's NEAREST (LAVT's resize of the ground truth) samples pixel
    # centres: torch's 'nearest-exact'
    gt = torch.nn.functional.interpolate(
        gt[None, None], size=(size, size), mode='nearest-exact')[0, 0]
    return sent_id, (logits > 0).numpy(), (gt > 0.5).numpy()


def sample_ious(inters: np.ndarray, unions: np.ndarray) -> np.ndarray:
    """Per-sample IoU ``I / U``; 1.0 where ``U == 0`` (empty GT and empty
    prediction).

    Args:
        inters: (N,) intersections.
        unions: (N,) unions.

    Returns:
        (N,) float64 IoUs in [0, 1].
    """
    inters = np.asarray(inters, dtype=np.float64)
    unions = np.asarray(unions, dtype=np.float64)
    if inters.shape != unions.shape:
        raise ValueError(f'inters shape {inters.shape} does not match '
                         f'unions shape {unions.shape}')
    ious = np.ones_like(inters)
    nonzero = unions > 0
    ious[nonzero] = inters[nonzero] / unions[nonzero]
    return ious


def _plain(value: Any) -> Any:
    """Make ids plain python values (picklable, JSON-able)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
