"""``PredictionDumpHook``: write every test prediction as a PNG mask plus a
JSON index (what ``tools/test.py --out DIR`` turns on). Every file is written
atomically (temporary file + rename): an interrupted test leaves complete
masks and either the previous index or none, never a truncated one."""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.dist import all_gather_object, is_main_process
from mmengine.hooks import Hook

from sera_mm.registry import HOOKS
from sera_mm.utils.file_io import atomic_write_image, atomic_write_json

_META_KEYS = ('img_path', 'text', 'ref_id', 'sent_id', 'ann_id', 'image_id',
              'category_id', 'expr_type', 'ori_shape')


def _jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and containers to JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, 'tolist'):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def interleave_ranks(parts: Sequence[List[Any]],
                     size: Optional[int]) -> List[Any]:
    """Per-rank result lists back in dataset order, without the samples
    the distributed sampler padded on.

    mmengine's ``DefaultSampler`` gives rank r the positions r, r + W,
    r + 2W, ... of the (padded) index list, repeating samples from the start
    so that every rank gets as many; interleaving the lists restores the
    order and truncating to the dataset size drops the repeats."""
    out = []
    longest = max((len(p) for p in parts), default=0)
    for i in range(longest):
        for part in parts:
            if i < len(part):
                out.append(part[i])
    return out if size is None else out[:size]


def _dataset_size(runner) -> Optional[int]:
    try:
        return len(runner.test_dataloader.dataset)
    except (AttributeError, TypeError):
        return None


@HOOKS.register_module()
class PredictionDumpHook(Hook):
    """Dump test predictions: ``<out_dir>/masks/<name>.png`` (0/255, at the
    original image resolution) and ``<out_dir>/predictions.json``.

    ``<name>`` is ``<image stem>_<sent_id>`` (or a per-rank counter when the
    sample has no ``sent_id``). Each JSON record holds the sample's ids and
    expression, the mask file (relative to ``out_dir``), the predicted
    foreground fraction, the IoU with the ground truth when the sample has
    one, and the routing weights when the model reported them. Works under
    distributed testing: records are gathered to rank 0 and the samples the
    distributed sampler repeats to even out the ranks are dropped (with
    their mask files), so the index holds each dataset sample once.

    Args:
        out_dir: output folder (created).
    """

    priority = 'LOW'

    def __init__(self, out_dir: str) -> None:
        if not isinstance(out_dir, str) or not out_dir:
            raise ValueError(f'out_dir must be a non-empty path, got '
                             f'{out_dir!r}')
        self.out_dir = out_dir
        self.records: List[Dict[str, Any]] = []
        self._count = 0

    def before_test(self, runner) -> None:
        os.makedirs(osp.join(self.out_dir, 'masks'), exist_ok=True)
        self.records = []
        self._count = 0

    def _name(self, runner, meta: Dict[str, Any]) -> str:
        stem = osp.splitext(osp.basename(str(meta.get('img_path') or 'img')))[0]
        if meta.get('sent_id') is not None:
            return f'{stem}_{meta["sent_id"]}'
        self._count += 1
        return f'{stem}_r{runner.rank}_{self._count:06d}'

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or []:
            meta = sample.metainfo
            if 'pred_sem_seg' not in sample:
                raise KeyError('PredictionDumpHook needs "pred_sem_seg" in '
                               'each test output; got keys '
                               f'{sorted(sample.keys())}')
            pred = sample.pred_sem_seg.data.squeeze(0).cpu().numpy() > 0
            name = self._name(runner, meta)
            rel = osp.join('masks', f'{name}.png')
            atomic_write_image(osp.join(self.out_dir, rel),
                               pred.astype(np.uint8) * 255)
            record = {k: _jsonable(meta.get(k)) for k in _META_KEYS}
            record.update(mask=rel, pred_fraction=float(pred.mean()))
            if 'gt_sem_seg' in sample:
                gt = sample.gt_sem_seg.data.squeeze(0).cpu().numpy() > 0
                if gt.shape == pred.shape:
                    union = np.logical_or(gt, pred).sum()
                    inter = np.logical_and(gt, pred).sum()
                    record['iou'] = float(inter / union) if union else 1.0
            if 'routing' in meta:
                record['routing'] = _jsonable(meta['routing'])
            self.records.append(record)

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        gathered = all_gather_object(self.records)
        if not is_main_process():
            return
        size = _dataset_size(runner)
        records = interleave_ranks(gathered, size)
        kept = {r['mask'] for r in records}
        for part in gathered:  # masks of the padded duplicates only
            for r in part:
                if r['mask'] not in kept:
                    path = osp.join(self.out_dir, r['mask'])
                    if osp.isfile(path):
                        os.remove(path)
        records.sort(key=lambda r: (str(r.get('img_path')),
                                    str(r.get('sent_id')), r['mask']))
        atomic_write_json(records, osp.join(self.out_dir, 'predictions.json'),
                          indent=1)
        runner.logger.info(f'wrote {len(records)} predictions to '
                           f'{self.out_dir}')
