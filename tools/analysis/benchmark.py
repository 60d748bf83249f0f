"""Benchmark a SERA config against its bare frozen encoders.

    python tools/analysis/benchmark.py CONFIG [--batch-size 2]
        [--throughput-batch 8] [--input-size N] [--runs 5] [--warmup 2]
        [--threads 2] [--amp] [--channels-last]
        [--sweep input_size=320,416,512] [--sweep num_experts=1,2,4]
        [--sweep adapter_layers=0,2,6] [--sweep batch=1,2,4]
        [--out-dir DIR] [--skip-train] [--no-flops] [--no-paired]
        [--isolation process|none]
        [--cfg-options key=value ...]
    python tools/analysis/benchmark.py CONFIG --profile [--profile-ops N]
    python tools/analysis/benchmark.py CONFIG --memory-steps N
    python tools/analysis/benchmark.py CONFIG (--compare-options K=V ... |
        --compare-config OTHER | --compare-amp | --compare-channels-last |
        --compare-compile)
        [--compare-kind train|infer] [--compare-vary]

The model is built with random weights of the configured geometry. The same
synthetic inputs (uint8 letterboxed images, varied expressions) go through
the whole segmentor ('SERA') and through the text encoder + backbone with
adapters removed ('bare encoders'). Figures: latency at batch 1, throughput
at ``--throughput-batch``, one training step (loss, backward, AdamW) at
``--batch-size``, peak memory increase of each, FLOPs at batch 1 and
parameter counts, each with its SERA / bare ratio. The latency of both is
also timed in alternation in one process (``interleaved runs``), whose
ratio does not drift with the machine's speed. Each ``--sweep`` varies
one factor and records SERA's latency, training step and memory per value.

Writes ``benchmark.md``, ``benchmark.csv`` and ``benchmark.png`` to
``--out-dir`` (default ``work_dirs/benchmark/<config name>``). ``--profile``
writes the training step by part (``profile.md``) and, with
``--profile-ops``, by operator (``ops.md``); ``--compare-*`` times the
config against a changed one in alternation in one process
(``compare.md``).
"""
import argparse
import csv
import logging
import os
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

# the measuring harness is a tool module beside this script, not part of
# the runtime package
_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
# project configs import ``projects.*`` modules (custom_imports)
_ROOT = osp.dirname(osp.dirname(_HERE))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

MB = 1024.0**2

# (key in the measured dict, metric label, unit, scale)
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


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--batch-size', type=int, default=2,
                        help='batch of the training step')
    parser.add_argument('--throughput-batch', type=int, default=8,
                        help='batch of the throughput measurement (0 skips)')
    parser.add_argument('--input-size', type=int, default=None,
                        help='square input size (default: the config\'s '
                        'data_preprocessor size)')
    parser.add_argument('--runs', type=int, default=5,
                        help='timed runs (the median is reported)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed runs before timing')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch.set_num_threads')
    parser.add_argument('--amp', action='store_true',
                        help='autocast (bfloat16 on CPU, float16 on CUDA)')
    parser.add_argument('--channels-last', action='store_true',
                        help='model and inputs in channels_last')
    parser.add_argument('--sweep', action='append', default=[],
                        metavar='KEY=V1,V2',
                        help='vary one factor: input_size, batch, '
                        'num_experts, adapter_layers (repeatable)')
    parser.add_argument('--out-dir', help='output folder')
    parser.add_argument('--profile', action='store_true',
                        help='only the per-module training-step profile '
                        '(forward/backward per part) into profile.md')
    parser.add_argument('--profile-ops', type=int, default=0, metavar='N',
                        help='with --profile: also the N operators with the '
                        'most self time (torch.profiler, by input shape; '
                        'forward and backward) into ops.md')
    parser.add_argument('--skip-train', action='store_true',
                        help='skip the training step measurements')
    parser.add_argument('--memory-steps', type=int, default=0, metavar='N',
                        help='also record the process memory after each of '
                        'N training steps on new batches (N >= 2; does the '
                        'memory keep growing?)')
    parser.add_argument('--compare-options', nargs='+', action=DictAction,
                        metavar='KEY=VALUE',
                        help='only compare the config (a) with the config '
                        'plus these options (b), timed in alternation in '
                        'one process; writes compare.md')
    parser.add_argument('--compare-config',
                        help='only compare the config (a) with this one '
                        '(b), timed in alternation; writes compare.md')
    parser.add_argument('--compare-kind', choices=('train', 'infer'),
                        default='train',
                        help='what --compare-* times: a training step at '
                        '--batch-size (default) or inference at batch 1')
    parser.add_argument('--compare-vary', action='store_true',
                        help='with --compare-kind train: a new batch every '
                        'step instead of one batch repeated')
    parser.add_argument('--compare-amp', action='store_true',
                        help='only compare the config (a) with itself under '
                        'autocast (b: bfloat16 on CPU, float16 on CUDA; '
                        'with --compare-options, b gets both)')
    parser.add_argument('--compare-channels-last', action='store_true',
                        help='only compare the config (a) with itself in '
                        'channels-last memory format (b)')
    parser.add_argument('--compare-compile', action='store_true',
                        help='only compare the config (a) with itself '
                        'under torch.compile (b; the first call compiles '
                        'and is reported apart)')
    parser.add_argument('--no-paired', action='store_true',
                        help='skip the interleaved latency comparison')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the FLOP count')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda if available)')
    parser.add_argument('--isolation', choices=('process', 'none'),
                        default='process',
                        help="'process': each subject in a fresh spawned "
                        "process (clean memory baseline); 'none': all in "
                        'this process (faster)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    from sera_mm.utils.cli import add_debug_argument
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    for name in ('batch_size', 'runs', 'threads'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0 or args.throughput_batch < 0:
        parser.error('--warmup and --throughput-batch must be >= 0')
    if args.memory_steps == 1 or args.memory_steps < 0:
        parser.error('--memory-steps must be 0 (off) or >= 2')
    return args


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
    from benchmark_harness import ratio
    rows = []
    for key, label, unit, scale in MAIN_METRICS:
        a, b = _value(sera, key, scale), _value(bare, key, scale)
        if a is None and b is None:
            continue
        rows.append(
            dict(section='main', setting='',
                 metric=label.format(bs=batch_size, tb=throughput_batch,
                                     ms=memory_steps),
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


def _config_size(cfg_model: Dict[str, Any]) -> Optional[int]:
    size = (cfg_model.get('data_preprocessor') or {}).get('size')
    return int(size[0]) if size else None


def format_compare(result: Dict[str, Any], a_name: str, b_name: str,
                   setup: str) -> str:
    """Markdown of :func:`benchmark_harness.measure_compare`'s result."""
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


def compare(args: argparse.Namespace, cfg_model: Dict[str, Any], size: int,
            base: Dict[str, Any], out_dir: str, bm,
            other=None) -> Dict[str, Any]:
    """``--compare-options`` / ``--compare-config``: time the config (a)
    against the other (b, ``other``: the loaded ``--compare-config``) in
    alternation and write ``compare.md``."""
    import torch
    from mmengine.config import Config
    if args.compare_config:
        b_name = args.compare_config
    else:
        other = Config.fromfile(args.config)
        b_name = args.config
    if args.cfg_options:
        other.merge_from_dict(args.cfg_options)
    if args.compare_options:
        other.merge_from_dict(args.compare_options)
        b_name += ' + ' + ' '.join(f'{k}={v}' for k, v in
                                   args.compare_options.items())
    b_amp = base['amp'] or args.compare_amp
    b_cl = base['channels_last'] or args.compare_channels_last
    if b_amp != base['amp']:
        b_name += ' + autocast'
    if b_cl != base['channels_last']:
        b_name += ' + channels-last'
    if args.compare_compile:
        b_name += ' + torch.compile'
    spec = dict(base, kind=args.compare_kind, train_batch=args.batch_size,
                latency_batch=1, vary=args.compare_vary, b_amp=b_amp,
                b_channels_last=b_cl, b_compile=args.compare_compile,
                cfg_models=dict(a=cfg_model, b=bm.set_input_size(
                    other.model.to_dict(), size)))
    fn = bm.measure_compare
    result = bm.run_isolated(fn, spec) if args.isolation == 'process' \
        else fn(spec)
    batch = args.batch_size if args.compare_kind == 'train' else 1
    setup = (f'device {base["device"]}, threads {base["threads"]}, input '
             f'{size}x{size}, batch {batch}, '
             f'{base["runs"]} pairs after {base["warmup"]} warm-up, '
             f'new batch every step: {bool(args.compare_vary)}, torch '
             f'{torch.__version__} ({cpu_kernels()} CPU kernels), random '
             'weights.')
    text = format_compare(result, args.config, b_name, setup)
    path = osp.join(out_dir, 'compare.md')
    with open(path, 'w') as f:
        f.write(text)
    print(text)
    return dict(compare=result, paths=dict(md=path))


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import sera_mm  # noqa: F401 (mmcv.ops fallback before mmseg)
    import torch
    from mmengine.config import Config
    from tqdm import tqdm

    import benchmark_harness as bm
    logger = logging.getLogger('sera_mm.benchmark')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg_model = cfg.model.to_dict()
    name = osp.splitext(osp.basename(args.config))[0]
    out_dir = args.out_dir or osp.join('work_dirs', 'benchmark', name)
    os.makedirs(out_dir, exist_ok=True)
    sweeps = [bm.parse_sweep(s) for s in args.sweep]
    size = args.input_size or _config_size(cfg_model)
    if size is None:
        raise ValueError('--input-size is required: the config\'s '
                         'data_preprocessor has no size')
    cfg_model = bm.set_input_size(cfg_model, size)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.isolation == 'none':
        torch.set_num_threads(args.threads)
    cfgs = [cfg]
    other = None
    if args.compare_config:
        other = Config.fromfile(args.compare_config)
        cfgs.append(other)
    base = dict(device=device, threads=args.threads, amp=args.amp,
                channels_last=args.channels_last, size=size,
                runs=args.runs, warmup=args.warmup,
                imports=bm.config_imports(*cfgs))
    bm.import_config_modules(base['imports'])
    if (args.compare_options or args.compare_config or args.compare_amp
            or args.compare_channels_last or args.compare_compile):
        return compare(args, cfg_model, size, base, out_dir, bm, other)
    if args.profile:
        torch.set_num_threads(args.threads)
        runner = bm.Runner(bm.build_subject(cfg_model, 'sera', device),
                           device, args.amp, args.channels_last)
        profile = bm.profile_train_step(runner, args.batch_size, size,
                                        args.runs, args.warmup)
        setup = (f'device {device}, threads {args.threads}, input '
                 f'{size}x{size}, batch {args.batch_size}, runs '
                 f'{args.runs} (median, min-max) after {args.warmup} '
                 f'warm-up, amp {args.amp}, torch {torch.__version__}, '
                 'random weights of the configured geometry.')
        text = bm.format_profile(profile, name, setup)
        with open(osp.join(out_dir, 'profile.md'), 'w') as f:
            f.write(text)
        print(text)
        out = dict(profile=profile)
        if args.profile_ops:
            ops = bm.profile_ops(runner, args.batch_size, size, args.runs,
                                 args.warmup, top=args.profile_ops)
            text = bm.format_ops(ops, name, setup)
            with open(osp.join(out_dir, 'ops.md'), 'w') as f:
                f.write(text)
            print(text)
            out['ops'] = ops
        return out

    jobs = []  # (tag, spec); ('paired', ) runs measure_paired
    for subject in bm.SUBJECTS:
        jobs.append(((subject, ), dict(
            base, cfg_model=cfg_model, subject=subject, latency_batch=1,
            throughput_batch=args.throughput_batch,
            train_batch=0 if args.skip_train else args.batch_size,
            memory_steps=args.memory_steps,
            flops=not args.no_flops, params=True)))
    for key, values in sweeps:
        for v in values:
            spec = dict(base, cfg_model=bm.apply_sweep(cfg_model, key, v),
                        subject='sera', latency_batch=1, throughput_batch=0,
                        train_batch=0 if args.skip_train else
                        args.batch_size, flops=False, params=False)
            if key == 'input_size':
                spec['size'] = v
            if key == 'batch':
                spec['latency_batch'] = v
                spec['train_batch'] = 0 if args.skip_train else v
            jobs.append(((key, v), spec))

    if not args.no_paired:
        jobs.append((('paired', ), dict(
            base, cfg_model=cfg_model, latency_batch=1)))

    results: Dict[Tuple, Dict[str, Any]] = {}
    with tqdm(jobs, desc='benchmark', unit='job') as bar:
        for tag, spec in bar:
            bar.set_postfix_str(' '.join(str(t) for t in tag))
            fn = bm.measure_paired if tag == ('paired', ) else bm.measure
            results[tag] = bm.run_isolated(fn, spec) \
                if args.isolation == 'process' else fn(spec)
            logger.info('%s: %s', tag, {
                k: v for k, v in results[tag].items() if k != 'latency_runs'
            })

    sera, bare = results[('sera', )], results[('bare', )]
    if args.isolation == 'none':  # process-wide figures mean nothing here
        for r in (sera, bare):
            for key in ('max_rss', 'ready_rss', 'train_rss_first',
                        'train_rss_last', 'train_rss_growth'):
                r.pop(key, None)
    rows = main_rows(sera, bare, args.batch_size, args.throughput_batch,
                     args.memory_steps)
    paired = results.get(('paired', ))
    if paired:
        rows.insert(1, dict(
            section='main', setting='',
            metric='latency, batch 1, interleaved runs', unit='ms',
            sera=paired['sera_s'] * 1e3, bare=paired['bare_s'] * 1e3,
            ratio=paired['ratio']))
    for key, values in sweeps:
        sres = [(v, results[(key, v)]) for v in values]
        if args.isolation == 'none':
            for _, r in sres:
                r.pop('max_rss', None)
        rows += sweep_rows(key, sres)

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
    setup = (f'device {device}, threads {args.threads}, input {size}x{size}'
             f', runs {args.runs} (median) after {args.warmup} warm-up, '
             f'amp {args.amp}, channels_last {args.channels_last}, '
             f'isolation {args.isolation}, torch {torch.__version__}, '
             f'random weights of the configured geometry.')
    sweep_keys = [k for k, _ in sweeps]
    paths = dict(md=osp.join(out_dir, 'benchmark.md'),
                 csv=osp.join(out_dir, 'benchmark.csv'),
                 png=osp.join(out_dir, 'benchmark.png'))
    write_csv(paths['csv'], rows)
    text = write_markdown(paths['md'], name, setup, rows, notes, sweep_keys)
    write_plot(paths['png'], rows, sweep_keys)
    print(text)
    print('written to ' + ', '.join(paths.values()))
    return dict(rows=rows, results=results, paths=paths)


def main(argv=None) -> Dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    if args.profile_ops and not args.profile:
        raise SystemExit('error: --profile-ops needs --profile')
    if args.profile_ops < 0:
        raise SystemExit(f'error: --profile-ops must be >= 0, got '
                         f'{args.profile_ops}')
    return run(args)


if __name__ == '__main__':
    from sera_mm.utils.cli import run_cli
    run_cli(main)
