"""The benchmark's reports: ``benchmark.md`` / ``benchmark.csv`` /
``benchmark.png`` (SERA against the bare encoders, with sweeps),
``compare.md`` (two models in alternation), ``profile.md`` (per part) and
``ops.md`` (per operator)."""
import csv
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .stats import ratio

MB = 1024.0**2

MAIN_METRICS = (
    ('latency_s', 'latency, batch 1', 'ms', 1e3),
    ('throughput_ips', 'throughput, batch {tb}', 'img/s', 1.0),
    ('train_s', 'train step, batch {bs}', 'ms', 1e3),
    ('latency_mem', 'peak memory increase, inference batch 1', 'MB',
     1 / MB),
    ('throughput_mem', 'peak memory increase, inference batch {tb}', 'MB',
     1 / MB),
    ('train_mem', 'peak memory increase, train step batch {bs}', 'MB',
     1 / MB),
    ('ready_rss', 'process memory with the model built', 'MB', 1 / MB),
    ('train_rss_first', 'process memory after training step 1 (new batch '
     'each step)', 'MB', 1 / MB),
    ('train_rss_last', 'process memory after training step {ms}', 'MB',
     1 / MB),
    ('train_rss_growth', 'growth from training step 2 to {ms}', 'MB',
     1 / MB),
    ('max_rss', 'process peak memory (ru_maxrss)', 'MB', 1 / MB),
    ('train_tensor_peak', 'peak tensor memory, training step {ms1} '
     '(parameters, gradients, optimizer state, activations)', 'MB', 1 / MB),
    ('flops', 'FLOPs, forward batch 1', 'GFLOPs', 1e-9),
    ('params_total', 'parameters, total', 'M', 1e-6),
    ('params_trainable', 'parameters, trainable', 'M', 1e-6),
    ('backbone_fraction', 'trainable share of the encoders', '%', 100.0),
)

SWEEP_METRICS = (
    ('latency_s', 'latency', 'ms', 1e3),
    ('latency_mem', 'peak memory increase, inference', 'MB', 1 / MB),
    ('train_s', 'train step', 'ms', 1e3),
    ('train_mem', 'peak memory increase, train step', 'MB', 1 / MB),
    ('max_rss', 'process peak memory', 'MB', 1 / MB),
)

CSV_FIELDS = ('section', 'setting', 'metric', 'unit', 'sera', 'bare',
              'ratio')

def _value(res: Dict[str, Any], key: str, scale: float) -> Optional[float]:
    v = res.get(key)
    return None if v is None else float(v) * scale

def _fmt(v: Optional[float]) -> str:
    if v is None:
        return 'n/a'
    if v == 0 or abs(v) >= 100:
        return f'{v:.1f}'
    if abs(v) >= 1:
        return f'{v:.2f}'
    return f'{v:.4g}'

def main_rows(sera: Dict[str, Any], bare: Dict[str, Any], batch_size: int,
              throughput_batch: int,
              memory_steps: int = 0) -> List[Dict[str, Any]]:
    """Rows (metric, unit, sera, bare, ratio) of the main comparison."""
    rows = []
    for key, label, unit, scale in MAIN_METRICS:
        a, b = _value(sera, key, scale), _value(bare, key, scale)
        if a is None and b is None:
            continue
        rows.append(
            dict(section='main', setting='',
                 metric=label.format(bs=batch_size, tb=throughput_batch,
                                     ms=memory_steps, ms1=memory_steps + 1),
                 unit=unit, sera=a, bare=b, ratio=ratio(a, b)))
    return rows

def sweep_rows(key: str, results: Sequence[Tuple[int, Dict[str, Any]]]
               ) -> List[Dict[str, Any]]:
    """Rows of one sweep: one per (value, metric) measured for SERA."""
    rows = []
    for value, res in results:
        for k, label, unit, scale in SWEEP_METRICS:
            v = _value(res, k, scale)
            if v is None:
                continue
            rows.append(dict(section=f'sweep:{key}', setting=str(value),
                             metric=label, unit=unit, sera=v, bare=None,
                             ratio=None))
    return rows

def write_csv(path: str, rows: Sequence[Dict[str, Any]]) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({
                k: ('' if r[k] is None and k in ('bare', 'ratio') and
                    r['section'] != 'main' else
                    ('n/a' if r[k] is None else
                     (f'{r[k]:.6g}' if isinstance(r[k], float) else r[k])))
                for k in CSV_FIELDS
            })

def write_markdown(path: str, title: str, setup: str,
                   rows: Sequence[Dict[str, Any]], notes: Sequence[str],
                   sweeps: Sequence[str]) -> str:
    lines = [f'# Benchmark: {title}', '', setup, '',
             '| metric | SERA | bare encoders | ratio |',
             '| --- | ---: | ---: | ---: |']
    for r in rows:
        if r['section'] != 'main':
            continue
        ratio = 'n/a' if r['ratio'] is None else f'{r["ratio"]:.2f}x'
        lines.append(f'| {r["metric"]} ({r["unit"]}) | {_fmt(r["sera"])} | '
                     f'{_fmt(r["bare"])} | {ratio} |')
    lines += [''] + [f'- {n}' for n in notes if n]
    for key in sweeps:
        srows = [r for r in rows if r['section'] == f'sweep:{key}']
        metrics = list(dict.fromkeys((r['metric'], r['unit'])
                                     for r in srows))
        values = list(dict.fromkeys(r['setting'] for r in srows))
        lines += ['', f'## Sweep: {key}', '',
                  '| ' + key + ' | ' +
                  ' | '.join(f'{m} ({u})' for m, u in metrics) + ' |',
                  '| ---' + ' | ---:' * len(metrics) + ' |']
        for v in values:
            cells = []
            for m, u in metrics:
                hit = [r['sera'] for r in srows
                       if r['setting'] == v and r['metric'] == m]
                cells.append(_fmt(hit[0]) if hit else 'n/a')
            lines.append(f'| {v} | ' + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    with open(path, 'w') as f:
        f.write(text)
    return text

def write_plot(path: str, rows: Sequence[Dict[str, Any]],
               sweeps: Sequence[str]) -> None:
    """One subplot per sweep (latency and memory vs value); without sweeps a
    bar chart of the SERA / bare ratios."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if sweeps:
        fig, axes = plt.subplots(1, len(sweeps),
                                 figsize=(5 * len(sweeps), 4), squeeze=False)
        for ax, key in zip(axes[0], sweeps):
            srows = [r for r in rows if r['section'] == f'sweep:{key}']
            values = list(dict.fromkeys(r['setting'] for r in srows))
            xs = [float(v) for v in values]

            def series(metric):
                return [next((r['sera'] for r in srows if r['setting'] == v
                              and r['metric'] == metric), float('nan'))
                        for v in values]

            ax.plot(xs, series('latency'), 'o-', color='C0',
                    label='latency (ms)')
            if any(r['metric'] == 'train step' for r in srows):
                ax.plot(xs, series('train step'), 's-', color='C2',
                        label='train step (ms)')
            ax.set_xlabel(key)
            ax.set_ylabel('ms')
            ax2 = ax.twinx()
            mem_metric = ('peak memory increase, train step' if any(
                r['metric'] == 'peak memory increase, train step'
                for r in srows) else 'peak memory increase, inference')
            ax2.plot(xs, series(mem_metric), 'd--', color='C3',
                     label=mem_metric.replace('peak memory increase, ',
                                              'memory, ') + ' (MB)')
            ax2.set_ylabel('MB')
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc='upper left')
            ax.set_title(f'sweep: {key}')
    else:
        main = [r for r in rows if r['section'] == 'main' and r['ratio']]
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(main) + 1.5))
        ax.barh([r['metric'] for r in main], [r['ratio'] for r in main])
        ax.axvline(1.0, color='k', lw=0.8)
        ax.set_xlabel('SERA / bare encoders')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

def format_compare(result: Dict[str, Any], a_name: str, b_name: str,
                   setup: str) -> str:
    """Markdown of :func:`.run.measure_compare`'s result."""
    what = ('training step' if result['kind'] == 'train' else
            'inference')
    lines = [f'# Compare: {what}', '', setup, '',
             f'- a: {a_name}', f'- b: {b_name}', '',
             '| | min | median | max |', '| --- | ---: | ---: | ---: |']
    for key in ('a', 'b'):
        t = result[key]
        lines.append(f'| {key} (ms) | {t["min"] * 1e3:.1f} | '
                     f'{t["median"] * 1e3:.1f} | {t["max"] * 1e3:.1f} |')
    r = result['ratios']
    lines.append(f'| b / a, per pair | {min(r):.3f} | '
                 f'{result["ratio"]:.3f} | {max(r):.3f} |')
    lines += ['', f'{len(r)} pairs; which model runs first alternates '
              'between pairs. A ratio below 1: b is faster.']
    first = result.get('first')
    if first:
        lines.append('First call (before the pairs; includes compiling '
                     f'where b compiles): a {first["a"]:.1f} s, b '
                     f'{first["b"]:.1f} s.')
    lines.append('')
    return '\n'.join(lines)

def cpu_kernels() -> str:
    """The CPU instruction set torch's kernels use (e.g. 'AVX512'),
    which decides e.g. whether bfloat16 is fast."""
    import torch
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # older torch
        return 'unknown'


def main_notes(device: str, paired: bool, sera: Dict[str, Any],
               bare: Dict[str, Any]) -> List[str]:
    """The notes under the main table of ``benchmark.md``."""
    notes = [
        'bare encoders = text encoder + backbone with adapter=None on the '
        'same inputs; their training step backpropagates the mean square '
        'of the backbone grids into the same trainable parameters '
        '(PET rule of the config).',
    ]
    if paired:
        notes.append(
            'latency, interleaved runs: both subjects built in one process '
            'and timed in alternation; the ratio is the median of the '
            'per-pair ratios, robust to drifts of the machine\'s speed.')
    notes += [
        'memory: peak increase over the memory held before the '
        'measurement (' + ('CUDA max_memory_allocated' if device == 'cuda'
                           else 'RSS sampled every 1 ms') + ').',
    ]
    for subject, r in (('SERA', sera), ('bare encoders', bare)):
        if r.get('flops_note'):
            notes.append(f'FLOPs {subject}: {r["flops_note"]}')
        if r.get('train_note'):
            notes.append(f'train step {subject}: {r["train_note"]}')
    return notes


def format_ops(result: Dict[str, Any], name: str, setup: str,
               top_ops: int = 10) -> str:
    """Markdown of :func:`.profiling.profile_ops`."""
    lines = [f'# Operator profile of the training step: {name}', '', setup,
             '', f'Self time of all operators: {result["total_ms"]:.0f} ms '
             'per step.', '', '| operator | self ms / step | share |',
             '| --- | ---: | ---: |']
    for op, ms in list(result['by_op'].items())[:top_ops]:
        share = ms / result['total_ms'] if result['total_ms'] else 0.0
        lines.append(f'| `{op}` | {ms:.1f} | {share:.1%} |')
    lines += ['', '| operator | input shapes | calls / step | self ms / step'
              ' | share |', '| --- | --- | ---: | ---: | ---: |']
    for r in result['rows']:
        shapes = r['shapes'].replace('|', '/')
        lines.append(f'| `{r["op"]}` | `{shapes}` | {r["calls"]:g} | '
                     f'{r["self_ms"]:.1f} | {r["share"]:.1%} |')
    return '\n'.join(lines) + '\n'

def format_profile(profile: Dict[str, Any], title: str, setup: str) -> str:
    """Markdown table of :func:`.profiling.profile_train_step`'s result."""
    lines = [f'# Training-step profile: {title}', '', setup, '',
             '| part | forward, median (min-max) ms |',
             '| --- | ---: |']
    names = []
    for key in profile:
        if '/' in key:
            name = key.rsplit('/', 1)[0]
            if name not in names:
                names.append(name)

    def cell(key):
        v = profile.get(key)
        return '-' if v is None else (f"{v['median']:.1f} "
                                      f"({v['min']:.1f}-{v['max']:.1f})")

    for name in names:
        lines.append(f'| {name} | {cell(name + "/forward")} |')
    lines += ['', '| step | median (min-max) ms |', '| --- | ---: |']
    for key in ('step', 'forward (loss)', 'backward', 'optimizer'):
        lines.append(f'| {key} | {cell(key)} |')
    lines += ['', '- each part\'s forward timed (adapters are inside the '
              'backbone\'s time; `backbone without adapters` subtracts '
              'them); backward and optimizer for the whole model.']
    return '\n'.join(lines) + '\n'
