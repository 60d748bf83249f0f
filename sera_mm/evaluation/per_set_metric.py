"""``PerSetMetric``: any referring metric, computed per evaluation split
when one dataloader holds several (``ConcatReferDataset``)."""
import copy
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from sera_mm.registry import METRICS
from .refer_metric import _format, _get


def _per_set_path(path: str, name: str) -> str:
    """``out/iou.csv`` and ``refcoco_unc/val`` give
    ``out/iou_refcoco_unc_val.csv``."""
    stem, ext = osp.splitext(path)
    safe = ''.join(c if c.isalnum() or c in '+-_.' else '_' for c in name)
    return f'{stem}_{safe}{ext}'


def _dataset_and_split(name: str):
    """``'refcoco_unc/testA'`` -> ``('refcoco_unc', 'testA')``; a name
    without ``/`` is its own dataset with split ``''``."""
    if '/' in name:
        dataset, split = name.rsplit('/', 1)
        return dataset, split
    return name, ''


@METRICS.register_module()
class PerSetMetric(BaseMetric):
    """Compute the wrapped metrics separately for every evaluation split
    of a :class:`~sera_mm.datasets.ConcatReferDataset`.

    Each sample's ``eval_set`` metainfo (``<dataset>/<split>``, set by the
    dataset) picks its group; a sample without one belongs to the
    dataset's ``dataset_name``. Every group gets the wrapped metrics'
    keys under ``<dataset>/<split>/``, e.g. ``refcoco_unc/val/mIoU``,
    ``refcocog_umd/test/BoxAcc@0.5``; ``mean/<key>`` for each of
    ``mean_keys`` is the unweighted mean over the groups that have it (a
    key for ``save_best``). The log gets each wrapped metric's own table
    per group, then one table per dataset with a row per split.

    One entry per sample is stored (the wrapped metrics' results for
    it), so mmengine's gathering and truncation to the dataset size under
    distributed evaluation work as for any metric.

    Args:
        metric: the wrapped metric config(s) (or instances), e.g.
            ``[dict(type='ReferMetric'), dict(type='ReferBoxMetric')]``.
            (Not called ``metrics``: mmengine reads an evaluator config
            with that key as an ``Evaluator``.) A wrapped metric's
            ``output_file`` gets the group name inserted before its
            extension.
        set_key: the metainfo key naming the group (``eval_set``).
        mean_keys: keys averaged over the groups into ``mean/<key>``.
        collect_device, prefix: as :class:`mmengine.evaluator.BaseMetric`.

    Raises:
        ValueError: no wrapped metric, or two wrapped metrics giving the
            same key.
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 metric: Union[dict, BaseMetric, Sequence[Any]],
                 set_key: str = 'eval_set',
                 mean_keys: Sequence[str] = ('mIoU', ),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         **kwargs)
        cfgs = metric if isinstance(metric, (list, tuple)) else [metric]
        if not cfgs:
            raise ValueError('PerSetMetric: metric is empty; expected one or '
                             "more metric configs, e.g. dict(type="
                             "'ReferMetric')")
        self.metrics: List[BaseMetric] = [
            m if isinstance(m, BaseMetric) else METRICS.build(
                copy.deepcopy(m)) for m in cfgs]
        self.set_key = set_key
        self.mean_keys = tuple(mean_keys)

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self._dataset_meta = dataset_meta
        for m in self.metrics:
            m.dataset_meta = dataset_meta

    def _default_set(self) -> str:
        meta = self._dataset_meta or {}
        return str(meta.get('dataset_name', 'all'))

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Run every wrapped metric's ``process`` on each sample alone and
        store ``(group, [results of each metric])``."""
        for sample in data_samples:
            name = _get(sample, self.set_key)
            name = self._default_set() if name is None else str(name)
            parts = []
            for m in self.metrics:
                m.results.clear()
                m.process(data_batch, [sample])
                parts.append(list(m.results))
                m.results.clear()
            self.results.append((name, parts))

    def _order(self, names: List[str]) -> List[str]:
        known = list((self._dataset_meta or {}).get('eval_sets') or [])
        ordered = [n for n in known if n in names]
        return ordered + [n for n in names if n not in ordered]

    def compute_metrics(self, results: List[Any]) -> Dict[str, Any]:
        groups: 'OrderedDict[str, List[List[Any]]]' = OrderedDict()
        for name, parts in results:
            lists = groups.setdefault(name, [[] for _ in self.metrics])
            for k, part in enumerate(parts):
                lists[k].extend(part)
        if not groups:
            print_log('PerSetMetric: no sample was evaluated',
                      logger='current', level=30)
        metrics: 'OrderedDict[str, Any]' = OrderedDict()
        per_set: 'OrderedDict[str, Dict[str, Any]]' = OrderedDict()
        for name in self._order(list(groups)):
            count = len([r for r in results if r[0] == name])
            print_log(f'PerSetMetric: {name} ({count} samples)',
                      logger='current')
            values: Dict[str, Any] = OrderedDict()
            for m, lst in zip(self.metrics, groups[name]):
                out_file = getattr(m, 'output_file', None)
                if out_file:
                    m.output_file = _per_set_path(str(out_file), name)
                try:
                    out = m.compute_metrics(lst)
                finally:
                    if out_file:
                        m.output_file = out_file
                if m.prefix:
                    out = {f'{m.prefix}/{k}': v for k, v in out.items()}
                for key, value in out.items():
                    if key in values:
                        raise ValueError(
                            f'PerSetMetric: two wrapped metrics give the key '
                            f'{key!r}; give one of them a prefix')
                    values[key] = value
            per_set[name] = values
            for key, value in values.items():
                metrics[f'{name}/{key}'] = value
        for key in self.mean_keys:
            vals = [v[key] for v in per_set.values() if key in v]
            if vals:
                metrics[f'mean/{key}'] = float(np.mean(vals))
        if per_set:
            print_log('\n' + self.format_tables(per_set), logger='current')
        return metrics

    @staticmethod
    def format_tables(per_set: Dict[str, Dict[str, Any]]) -> str:
        """One Markdown table per dataset, a row per split, the overall
        keys (those without ``/``) as columns."""
        datasets: 'OrderedDict[str, List[str]]' = OrderedDict()
        for name in per_set:
            datasets.setdefault(_dataset_and_split(name)[0], []).append(name)
        blocks = []
        for dataset, names in datasets.items():
            keys: List[str] = []
            for name in names:
                for key in per_set[name]:
                    if '/' not in key and key not in keys:
                        keys.append(key)
            lines = [f'{dataset}:',
                     '| split | ' + ' | '.join(keys) + ' |',
                     '|' + '|'.join(['---'] * (len(keys) + 1)) + '|']
            for name in names:
                cells = [_format(per_set[name][k]) if k in per_set[name]
                         else '-' for k in keys]
                split = _dataset_and_split(name)[1] or name
                lines.append(f'| {split} | ' + ' | '.join(cells) + ' |')
            blocks.append('\n'.join(lines))
        return '\n\n'.join(blocks)
