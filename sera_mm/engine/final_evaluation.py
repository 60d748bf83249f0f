"""Evaluate a trained runner on several splits and write one metric table.

Each split gets its own test loop, built through the Runner's public API
(:meth:`~mmengine.runner.Runner.build_test_loop` with the split's dataloader
and evaluator configs, which the loop builds with ``Runner.build_dataloader``
and ``Runner.build_evaluator``) and run with ``loop.run()``; the runner's own
test loop, dataloader and evaluator are left as configured.
"""
import copy
import json
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log

from sera_mm.utils.file_io import atomic_write_bytes

#: Columns of the summary table, in order.
TABLE_METRICS = ('mIoU', 'oIoU', 'Prec@0.5', 'Prec@0.6', 'Prec@0.7',
                 'Prec@0.8', 'Prec@0.9')
#: Columns for the generalised metric (:class:`GReferMetric`, ``gIoU`` key).
GENERALISED_TABLE_METRICS = ('gIoU', 'cIoU', 'N-acc', 'T-acc', 'Prec@0.7',
                             'Prec@0.8', 'Prec@0.9')


def _set_split(dataset_cfg: dict, split: str) -> None:
    """Set ``split`` on a dataset config (also inside wrappers)."""
    if 'split' in dataset_cfg or 'split_by' in dataset_cfg or \
            'Refer' in str(dataset_cfg.get('type', '')):
        dataset_cfg['split'] = split
        return
    inner = dataset_cfg.get('dataset')
    if isinstance(inner, dict):
        _set_split(inner, split)
        return
    raise KeyError(f'cannot set split {split!r}: the test dataset config '
                   f'{dataset_cfg.get("type")!r} has no split field')


#: Folder (in the work dir) of the per-expression IoUs of every split.
PER_SAMPLE_DIR = 'per_sample'


def _set_per_sample_output(evaluator_cfg, work_dir: str, split: str) -> None:
    """Make a ``ReferMetric`` without ``output_file`` write the
    per-expression IoUs to ``<work_dir>/per_sample/<split>.csv`` (what the
    paired comparisons of the ablation table read)."""
    cfgs = evaluator_cfg if isinstance(evaluator_cfg, list) else [
        evaluator_cfg]
    for cfg in cfgs:
        if isinstance(cfg, dict) and cfg.get('type') == 'ReferMetric' and \
                not cfg.get('output_file'):
            cfg['output_file'] = osp.join(work_dir, PER_SAMPLE_DIR,
                                          f'{split}.csv')


def metrics_table(results: Dict[str, Dict[str, float]]) -> str:
    """Markdown: one row per split (overall), then per split and expression
    type (``<type>/<metric>`` keys of :class:`ReferMetric`, or of
    :class:`GReferMetric` when the results carry ``gIoU``)."""
    columns = GENERALISED_TABLE_METRICS if any(
        'gIoU' in m for m in results.values()) else TABLE_METRICS
    head = '| split | type | count | ' + ' | '.join(columns) + ' |'
    lines = [head, '|' + '---|' * (3 + len(columns))]
    for split, metrics in results.items():
        types = sorted({k.split('/')[0] for k in metrics if '/' in k})
        counts = {t: int(float(metrics.get(f'{t}/count', 0))) for t in types}
        # ReferMetric's ``count``: every evaluated expression, typed or not
        total = metrics.get('count')
        total = int(float(total)) if total is not None else \
            (sum(counts.values()) or '')
        rows = [('all', total, '')]
        rows += [(t, counts[t], f'{t}/') for t in types]
        for name, count, prefix in rows:
            vals = [metrics.get(prefix + m) for m in columns]
            cells = ['' if v is None else f'{float(v):.2f}' for v in vals]
            lines.append(f'| {split} | {name} | {count} | ' +
                         ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _split_loop_cfg(loop_cfg: Optional[dict], dataloader: dict,
                    evaluator) -> dict:
    """A test loop config that carries its own dataloader and evaluator
    configs (``Runner.build_test_loop`` then builds them; it only falls back
    to the runner's own for keys that are absent)."""
    cfg = copy.deepcopy(dict(loop_cfg or {}))
    for key in ('dataloader', 'evaluator'):
        if key in cfg:
            raise ValueError(f'test_cfg: unexpected key {key!r}; the '
                             f'dataloader and evaluator come from '
                             f'test_dataloader and test_evaluator')
    cfg.setdefault('type', 'TestLoop')
    cfg.update(dataloader=dataloader, evaluator=evaluator)
    return cfg


def evaluate_splits(runner, splits: Sequence[str],
                    out_name: str = 'final_metrics',
                    weights: Optional[dict] = None) -> Dict[str, dict]:
    """Run a test loop of ``runner`` once per split and write
    ``<work_dir>/<out_name>.md`` and ``.json`` (all metrics per split).

    The ``ReferMetric`` of each split writes its per-expression IoUs to
    ``<work_dir>/per_sample/<split>.csv`` unless the config names an
    ``output_file``; ``ReferVisualizationHook`` pictures go to
    ``<work_dir>/vis/<split>``.

    Args:
        runner: a trained mmengine Runner (its ``test_dataloader``,
            ``test_cfg`` and ``test_evaluator`` configs are the template;
            only the dataset's ``split`` changes).
        splits: e.g. ``('val', 'testA', 'testB')``.
        out_name: file name stem of the table.
        weights: which weights are evaluated, e.g. ``{'weights': 'best',
            'checkpoint': path}``; recorded under the key ``'weights'`` of
            the JSON file and as a line of the Markdown file.

    Returns:
        ``{split: metrics}``.

    Raises:
        KeyError: the config has no ``test_dataloader`` or
            ``test_evaluator``, or the test dataset has no split field.
    """
    template = copy.deepcopy(runner.cfg.get('test_dataloader'))
    if template is None:
        raise KeyError('evaluate_splits needs test_dataloader in the config')
    evaluator_template = runner.cfg.get('test_evaluator')
    if evaluator_template is None:
        raise KeyError('evaluate_splits needs test_evaluator in the config')
    loop_template = runner.cfg.get('test_cfg')
    results: Dict[str, dict] = {}
    vis_hooks = [h for h in runner.hooks
                 if type(h).__name__ == 'ReferVisualizationHook']
    for split in splits:
        for hook in vis_hooks:  # pictures of each split in their own folder
            hook.out_dir = osp.join(runner.work_dir, 'vis', split)
        loader = copy.deepcopy(template)
        _set_split(loader['dataset'], split)
        evaluator = copy.deepcopy(evaluator_template)
        _set_per_sample_output(evaluator, runner.work_dir, split)
        loop = runner.build_test_loop(
            _split_loop_cfg(loop_template, loader, evaluator))
        print_log(f'final evaluation on split {split!r} '
                  f'({len(loop.dataloader.dataset)} expressions)',
                  logger='current')
        # mmengine's log processor counts the iterations of
        # ``runner.test_loop`` ('Iter(test) [i/N]'): point it at this
        # split's loop while it runs, then restore the configured one
        configured = runner._test_loop
        runner._test_loop = loop
        try:
            metrics = loop.run()
        finally:
            runner._test_loop = configured
        results[split] = {k: (float(v) if isinstance(v, (int, float)) else v)
                          for k, v in metrics.items()}
    if is_main_process():
        table = metrics_table(results)
        print_log('final metrics (percent):\n' + table, logger='current')
        base = osp.join(runner.work_dir, out_name)
        record: Dict[str, Any] = dict(results)
        if weights is not None:
            record['weights'] = dict(weights)
            where = weights.get('checkpoint')
            table = (f'Weights evaluated: {weights.get("weights")}'
                     + (f' ({osp.basename(where)})' if where else '')
                     + '\n\n' + table)
        atomic_write_bytes(table.encode(), base + '.md')
        atomic_write_bytes(
            json.dumps(record, indent=2, sort_keys=True).encode(),
            base + '.json')
    return results


__all__: List[str] = ['evaluate_splits', 'metrics_table', 'TABLE_METRICS']
