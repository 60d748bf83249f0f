"""Routing statistics: mean expert weights per expression type.

:func:`aggregate_routing` reads the ``routing`` metainfo of predictions
(``{router_name: {'experts': [...], 'weights': [...]}}``) and averages the
weights per expression type, for every router and for every router group
(the routers of all adapters form one group, the neck's routers another; see
:func:`~sera_mm.visualization.refer_visualizer.router_group`). The writers
turn the result into Markdown, CSV and a grouped bar chart.
"""
import csv
import io
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional

import numpy as np

from sera_mm.engine.atomic_io import atomic_write_bytes
from .refer_visualizer import check_routing_entry, router_group

#: Row name of the statistics over every sample.
ALL_TYPES = 'all'
#: Row name of samples that carry no ``expr_type``.
UNTYPED = 'untyped'


class _Mean:
    """Running per-expert sums."""

    def __init__(self) -> None:
        self.sums: 'OrderedDict[str, float]' = OrderedDict()
        self.count = 0

    def add(self, experts: List[str], weights: List[float]) -> None:
        for e, w in zip(experts, weights):
            self.sums[e] = self.sums.get(e, 0.0) + float(w)
        self.count += 1

    def result(self) -> Dict[str, Any]:
        return dict(count=self.count,
                    mean=OrderedDict((e, s / self.count)
                                     for e, s in self.sums.items()))


def aggregate_routing(samples_meta: Iterable[Mapping]) -> Dict[str, Any]:
    """Mean routing weights per expression type.

    Args:
        samples_meta: per-prediction metainfo dicts, each with ``routing``
            (``{router_name: {'experts': [...], 'weights': [...]}}``) and
            optionally ``expr_type``. Samples without routing are counted in
            ``skipped`` and otherwise ignored.

    Returns:
        dict with

        - ``types``: expression types in sorted order, then ``'all'``
          (``'untyped'`` stands for samples without a type);
        - ``counts``: ``{type: number of samples with routing}``;
        - ``experts``: ``{router or group name: [expert names]}``;
        - ``routers``: ``{router: {type: {'count', 'mean': {expert: w}}}}``;
        - ``groups``: ``{group: {type: {'count', 'mean': {expert: w}}}}``,
          where a sample's group weights are first averaged over the
          group's routers;
        - ``skipped``: number of samples without routing.

    Raises:
        ValueError: a routing entry is malformed.
    """
    routers: Dict[str, Dict[str, _Mean]] = OrderedDict()
    groups: Dict[str, Dict[str, _Mean]] = OrderedDict()
    experts: Dict[str, List[str]] = OrderedDict()
    counts: Dict[str, int] = {}
    skipped = 0
    for meta in samples_meta:
        routing = meta.get('routing') if isinstance(meta, Mapping) else None
        if not routing:
            skipped += 1
            continue
        expr_type = meta.get('expr_type')
        expr_type = UNTYPED if expr_type is None else str(expr_type)
        keys = (expr_type, ALL_TYPES)
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        per_group: Dict[str, Dict[str, List[float]]] = OrderedDict()
        for name, entry in routing.items():
            names, weights = check_routing_entry(name, entry)
            name = str(name)
            experts.setdefault(name, names)
            for key in keys:
                routers.setdefault(name, {}).setdefault(
                    key, _Mean()).add(names, weights)
            slot = per_group.setdefault(router_group(name), OrderedDict())
            for e, w in zip(names, weights):
                slot.setdefault(e, []).append(w)
        for group, slot in per_group.items():
            names = list(slot.keys())
            known = experts.setdefault(group, [])
            known.extend(e for e in names if e not in known)
            means = [float(np.mean(slot[e])) for e in names]
            for key in keys:
                groups.setdefault(group, {}).setdefault(
                    key, _Mean()).add(names, means)
    types = sorted(t for t in counts if t != ALL_TYPES)
    if counts:
        types.append(ALL_TYPES)

    def _finish(table: Dict[str, Dict[str, _Mean]]) -> Dict[str, Any]:
        return OrderedDict(
            (name, OrderedDict((t, per[t].result()) for t in types
                               if t in per))
            for name, per in table.items())

    return dict(types=types, counts=counts, experts=experts,
                routers=_finish(routers), groups=_finish(groups),
                skipped=skipped)


def _table(name: str, per_type: Mapping[str, Any], experts: List[str],
           decimals: int = 3) -> List[str]:
    header = ['expr_type', 'count'] + list(experts)
    lines = [f'### {name}', '', '| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(['---'] * len(header)) + '|']
    for expr_type, res in per_type.items():
        cells = [expr_type, str(res['count'])]
        for e in experts:
            value = res['mean'].get(e)
            cells.append('-' if value is None else f'{value:.{decimals}f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines + ['']


def format_router_stats_md(stats: Mapping[str, Any],
                           per_router: bool = True) -> str:
    """Markdown: one table per router group (rows: expression types,
    columns: experts), then (``per_router``) one table per router."""
    lines = ['# Router statistics', '',
             'Mean expert weights per expression type '
             f'({stats["counts"].get(ALL_TYPES, 0)} samples with routing, '
             f'{stats["skipped"]} without).', '', '## Router groups', '']
    for group, per_type in stats['groups'].items():
        lines += _table(group, per_type, stats['experts'][group])
    if per_router and stats['routers']:
        lines += ['## Routers', '']
        for router, per_type in stats['routers'].items():
            lines += _table(router, per_type, stats['experts'][router])
    return '\n'.join(lines)


def format_router_stats_csv(stats: Mapping[str, Any]) -> str:
    """CSV in long form: ``level, name, expr_type, count, expert, weight``
    (``level`` is ``group`` or ``router``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['level', 'name', 'expr_type', 'count', 'expert',
                     'weight'])
    for level, key in (('group', 'groups'), ('router', 'routers')):
        for name, per_type in stats[key].items():
            for expr_type, res in per_type.items():
                for expert, weight in res['mean'].items():
                    writer.writerow([level, name, expr_type, res['count'],
                                     expert, repr(float(weight))])
    return buf.getvalue()


def plot_router_stats(stats: Mapping[str, Any], path: str,
                      dpi: int = 100) -> None:
    """Grouped bar chart: one subplot per router group, expression types on
    the x axis, one bar per expert. Written with matplotlib's Agg backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(stats['groups'].keys())
    fig = Figure(figsize=(max(6.0, 1.3 * len(stats['types']) + 3),
                          3.2 * max(1, len(names))), dpi=dpi)
    FigureCanvasAgg(fig)
    if not names:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, 'no routing recorded', ha='center', va='center')
        ax.set_axis_off()
    for i, group in enumerate(names):
        ax = fig.add_subplot(len(names), 1, i + 1)
        per_type = stats['groups'][group]
        types = list(per_type.keys())
        experts = stats['experts'][group]
        x = np.arange(len(types))
        width = 0.8 / max(1, len(experts))
        for j, expert in enumerate(experts):
            values = [per_type[t]['mean'].get(expert, np.nan) for t in types]
            ax.bar(x - 0.4 + (j + 0.5) * width, values, width, label=expert)
        ax.set_xticks(x)
        ax.set_xticklabels([f'{t}\n(n={per_type[t]["count"]})'
                            for t in types], fontsize=8)
        ax.set_ylabel('mean weight')
        ax.set_title(group, fontsize=10)
        ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    atomic_write_bytes(buf.getvalue(), path)


def write_router_stats(stats: Mapping[str, Any], out_dir: str,
                       plot: bool = True) -> Dict[str, str]:
    """Write ``router_stats.md``, ``router_stats.csv`` and (``plot``)
    ``router_stats.png`` into ``out_dir`` (created), atomically.

    Returns:
        ``{'md': path, 'csv': path, 'png': path}`` of the files written.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = dict(md=osp.join(out_dir, 'router_stats.md'),
                 csv=osp.join(out_dir, 'router_stats.csv'))
    atomic_write_bytes(format_router_stats_md(stats).encode('utf-8'),
                       paths['md'])
    atomic_write_bytes(format_router_stats_csv(stats).encode('utf-8'),
                       paths['csv'])
    if plot:
        paths['png'] = osp.join(out_dir, 'router_stats.png')
        plot_router_stats(stats, paths['png'])
    return paths


def routing_from_sample(sample: Any) -> Optional[Dict[str, Any]]:
    """``{'routing', 'expr_type'}`` of a prediction (``SegDataSample`` or
    dict), the input :func:`aggregate_routing` expects."""
    meta = sample.metainfo if hasattr(sample, 'metainfo') else sample
    return dict(routing=meta.get('routing'), expr_type=meta.get('expr_type'))
