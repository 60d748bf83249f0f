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
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from sera_mm.utils.file_io import atomic_write_bytes
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


def mutual_information_bits(labels: Sequence[Any],
                            choices: Sequence[int]) -> float:
    """Plug-in mutual information (bits) between two discrete variables
    from their joint counts: ``sum p(t, e) log2(p(t, e) / p(t) p(e))``."""
    if len(labels) != len(choices):
        raise ValueError(f'labels ({len(labels)}) and choices '
                         f'({len(choices)}) must have the same length')
    if len(labels) == 0:
        return 0.0
    rows = {t: i for i, t in enumerate(sorted(set(labels), key=str))}
    cols = {c: j for j, c in enumerate(sorted(set(choices)))}
    joint = np.zeros((len(rows), len(cols)))
    for t, c in zip(labels, choices):
        joint[rows[t], cols[c]] += 1
    joint /= joint.sum()
    pt = joint.sum(1, keepdims=True)
    pe = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / (pt @ pe)[nz])).sum())


def routing_diagnostics(weights: np.ndarray,
                        labels: Optional[Sequence[Any]] = None,
                        experts: Optional[Sequence[str]] = None
                        ) -> Dict[str, Any]:
    """How expression-aware one router is.

    Args:
        weights: (N, E) routing distributions of N samples (rows sum to 1).
        labels: N expression types (None entries are left out of the
            type-dependent numbers), or None.
        experts: E expert names (default 'expert0', ...).

    Returns:
        dict with ``entropy_bits`` (mean per-sample entropy, bits),
        ``entropy_ratio`` (that over log2 E; 1 is uniform routing),
        ``mutual_info_bits`` (between type and top expert),
        ``max_gap`` (largest difference between two types' mean weight of
        one expert), ``gap_expert`` and ``gap_types`` (which), ``top_share``
        (share of samples whose top expert is each expert) and ``count``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] == 0:
        raise ValueError(f'weights must have shape (N>0, E), got {w.shape}')
    n, e = w.shape
    experts = list(experts) if experts is not None else [
        f'expert{i}' for i in range(e)]
    if len(experts) != e:
        raise ValueError(f'{len(experts)} expert names for {e} experts')
    p = np.clip(w, 1e-12, 1.0)
    entropy = float((-(w * np.log2(p)).sum(1)).mean())
    top = w.argmax(1)
    out: Dict[str, Any] = dict(
        count=n, entropy_bits=entropy,
        entropy_ratio=entropy / np.log2(e) if e > 1 else 0.0,
        top_share=OrderedDict((experts[j], float((top == j).mean()))
                              for j in range(e)),
        mutual_info_bits=0.0, max_gap=0.0, gap_expert=None, gap_types=None)
    if labels is None:
        return out
    if len(labels) != n:
        raise ValueError(f'{len(labels)} labels for {n} samples')
    keep = [i for i, t in enumerate(labels) if t is not None]
    if not keep:
        return out
    typed = [labels[i] for i in keep]
    out['mutual_info_bits'] = mutual_information_bits(
        typed, [int(top[i]) for i in keep])
    types = sorted(set(typed), key=str)
    if len(types) >= 2:
        idx = np.array(keep)
        means = np.stack([w[idx][np.array([t == u for t in typed])].mean(0)
                          for u in types])  # (T, E)
        gaps = means.max(0) - means.min(0)
        j = int(gaps.argmax())
        out.update(max_gap=float(gaps[j]), gap_expert=experts[j],
                   gap_types=(str(types[int(means[:, j].argmax())]),
                              str(types[int(means[:, j].argmin())])))
    return out


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
        - ``diagnostics``: ``{router: routing_diagnostics(...)}``
          (entropy, mutual information between type and top expert,
          largest per-expert gap between types);
        - ``skipped``: number of samples without routing.

    Raises:
        ValueError: a routing entry is malformed.
    """
    routers: Dict[str, Dict[str, _Mean]] = OrderedDict()
    groups: Dict[str, Dict[str, _Mean]] = OrderedDict()
    experts: Dict[str, List[str]] = OrderedDict()
    counts: Dict[str, int] = {}
    raw: Dict[str, List[List[float]]] = OrderedDict()
    raw_labels: Dict[str, List[Optional[str]]] = OrderedDict()
    skipped = 0
    for meta in samples_meta:
        routing = meta.get('routing') if isinstance(meta, Mapping) else None
        if not routing:
            skipped += 1
            continue
        raw_type = meta.get('expr_type')
        expr_type = UNTYPED if raw_type is None else str(raw_type)
        keys = (expr_type, ALL_TYPES)
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        per_group: Dict[str, Dict[str, List[float]]] = OrderedDict()
        for name, entry in routing.items():
            names, weights = check_routing_entry(name, entry)
            name = str(name)
            experts.setdefault(name, names)
            raw.setdefault(name, []).append(list(weights))
            raw_labels.setdefault(name, []).append(
                None if raw_type is None else str(raw_type))
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

    diagnostics = OrderedDict(
        (name, routing_diagnostics(np.asarray(rows), raw_labels[name],
                                   experts[name]))
        for name, rows in raw.items())
    return dict(types=types, counts=counts, experts=experts,
                routers=_finish(routers), groups=_finish(groups),
                diagnostics=diagnostics, skipped=skipped)


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
    if stats.get('diagnostics'):
        lines += format_diagnostics_md(stats['diagnostics'])
    if per_router and stats['routers']:
        lines += ['## Routers', '']
        for router, per_type in stats['routers'].items():
            lines += _table(router, per_type, stats['experts'][router])
    return '\n'.join(lines)


def format_diagnostics_md(diagnostics: Mapping[str, Mapping[str, Any]]
                          ) -> List[str]:
    """Markdown lines: one row per router with its expression-awareness
    numbers (see :func:`routing_diagnostics`)."""
    lines = ['## Expression-awareness', '',
             'Entropy: mean per-sample routing entropy (bits) and its ratio '
             'to log2(E); MI: mutual information (bits) between expression '
             'type and top expert; gap: largest difference between two '
             "types' mean weight of one expert.", '',
             '| router | samples | entropy (bits) | entropy / log2(E) | '
             'MI (bits) | gap | gap expert (types) |',
             '|---|---|---|---|---|---|---|']
    for name, d in diagnostics.items():
        where = '-' if d.get('gap_expert') is None else (
            f"{d['gap_expert']} ({d['gap_types'][0]} > "
            f"{d['gap_types'][1]})")
        lines.append(f"| {name} | {d['count']} | {d['entropy_bits']:.3f} | "
                     f"{d['entropy_ratio']:.3f} | "
                     f"{d['mutual_info_bits']:.3f} | {d['max_gap']:.3f} | "
                     f'{where} |')
    return lines + ['']


def plot_router_heatmap(stats: Mapping[str, Any], path: str,
                        dpi: int = 100) -> None:
    """Heatmaps of mean weights (expression types x experts), one panel
    per router, annotated with the values; Agg backend, written
    atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(stats['routers'].keys())
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = Figure(figsize=(4.6 * cols, 0.45 * len(stats['types']) * rows +
                          1.6 * rows), dpi=dpi)
    FigureCanvasAgg(fig)
    if not names:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, 'no routing recorded', ha='center', va='center')
        ax.set_axis_off()
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        per_type = stats['routers'][name]
        types = list(per_type.keys())
        experts = stats['experts'][name]
        grid = np.array([[per_type[t]['mean'].get(e, np.nan)
                          for e in experts] for t in types])
        im = ax.imshow(grid, cmap='viridis', aspect='auto', vmin=0.0,
                       vmax=max(1e-6, float(np.nanmax(grid))))
        for r in range(grid.shape[0]):
            for c in range(grid.shape[1]):
                ax.text(c, r, f'{grid[r, c]:.2f}', ha='center', va='center',
                        fontsize=7, color='w' if grid[r, c] < 0.6 *
                        np.nanmax(grid) else 'k')
        ax.set_xticks(range(len(experts)))
        ax.set_xticklabels(experts, rotation=30, ha='right', fontsize=7)
        ax.set_yticks(range(len(types)))
        ax.set_yticklabels(types, fontsize=7)
        d = (stats.get('diagnostics') or {}).get(name)
        title = name if d is None else (
            f"{name}\nMI {d['mutual_info_bits']:.2f} bits, "
            f"H/log2E {d['entropy_ratio']:.2f}")
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    atomic_write_bytes(buf.getvalue(), path)


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
    if stats.get('diagnostics') is not None:
        paths['json'] = osp.join(out_dir, 'router_diagnostics.json')
        atomic_write_bytes(
            json.dumps(stats['diagnostics'], indent=1).encode('utf-8'),
            paths['json'])
    if plot:
        paths['png'] = osp.join(out_dir, 'router_stats.png')
        plot_router_stats(stats, paths['png'])
        paths['heatmap'] = osp.join(out_dir, 'router_heatmap.png')
        plot_router_heatmap(stats, paths['heatmap'])
    return paths


def routing_from_sample(sample: Any) -> Optional[Dict[str, Any]]:
    """``{'routing', 'expr_type'}`` of a prediction (``SegDataSample`` or
    dict), the input :func:`aggregate_routing` expects."""
    meta = sample.metainfo if hasattr(sample, 'metainfo') else sample
    return dict(routing=meta.get('routing'), expr_type=meta.get('expr_type'))
