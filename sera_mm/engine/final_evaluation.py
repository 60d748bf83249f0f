"""Evaluate a trained runner on several splits and write one metric table."""
import copy
import json
import os.path as osp
from typing import Dict, List, Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log

from .atomic_io import atomic_write_bytes

#: Columns of the summary table, in order.
TABLE_METRICS = ('mIoU', 'oIoU', 'Prec@0.5', 'Prec@0.6', 'Prec@0.7',
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
    type (``<type>/<metric>`` keys of :class:`ReferMetric`)."""
    head = '| split | type | count | ' + ' | '.join(TABLE_METRICS) + ' |'
    lines = [head, '|' + '---|' * (3 + len(TABLE_METRICS))]
    for split, metrics in results.items():
        types = sorted({k.split('/')[0] for k in metrics if '/' in k})
        counts = {t: int(float(metrics.get(f'{t}/count', 0))) for t in types}
        rows = [('all', sum(counts.values()) or '', '')]
        rows += [(t, counts[t], f'{t}/') for t in types]
        for name, count, prefix in rows:
            vals = [metrics.get(prefix + m) for m in TABLE_METRICS]
            cells = ['' if v is None else f'{float(v):.2f}' for v in vals]
            lines.append(f'| {split} | {name} | {count} | ' +
                         ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def evaluate_splits(runner, splits: Sequence[str],
                    out_name: str = 'final_metrics') -> Dict[str, dict]:
    """Run the test loop of ``runner`` once per split and write
    ``<work_dir>/<out_name>.md`` and ``.json`` (all metrics per split).

    Args:
        runner: a trained mmengine Runner (its test dataloader config is
            the template; only the dataset's ``split`` changes).
        splits: e.g. ``('val', 'testA', 'testB')``.

    Returns:
        ``{split: metrics}``.
    """
    template = copy.deepcopy(runner.cfg.get('test_dataloader'))
    if template is None:
        raise KeyError('evaluate_splits needs test_dataloader in the config')
    loop_cfg = copy.deepcopy(runner.cfg.get('test_cfg') or
                             dict(type='TestLoop'))
    results: Dict[str, dict] = {}
    vis_hooks = [h for h in runner.hooks
                 if type(h).__name__ == 'ReferVisualizationHook']
    for split in splits:
        for hook in vis_hooks:  # pictures of each split in their own folder
            hook.out_dir = osp.join(runner.work_dir, 'vis', split)
        loader = copy.deepcopy(template)
        _set_split(loader['dataset'], split)
        runner._test_dataloader = loader
        runner._test_loop = copy.deepcopy(loop_cfg)
        evaluator = copy.deepcopy(runner.cfg.get('test_evaluator'))
        _set_per_sample_output(evaluator, runner.work_dir, split)
        runner._test_evaluator = evaluator
        print_log(f'final evaluation on split {split!r}', logger='current')
        results[split] = {k: (float(v) if isinstance(v, (int, float)) else v)
                          for k, v in runner.test().items()}
    if is_main_process():
        table = metrics_table(results)
        print_log('final metrics (percent):\n' + table, logger='current')
        base = osp.join(runner.work_dir, out_name)
        atomic_write_bytes(table.encode(), base + '.md')
        atomic_write_bytes(
            json.dumps(results, indent=2, sort_keys=True).encode(),
            base + '.json')
    return results


__all__: List[str] = ['evaluate_splits', 'metrics_table', 'TABLE_METRICS']
