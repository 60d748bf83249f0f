"""Benchmark a SERA config against its bare frozen encoders: the command
line of ``tools/analysis/benchmark.py`` (its docstring shows the usage).

The model is built with random weights of the configured geometry. The same
synthetic inputs (uint8 letterboxed images, varied expressions) go through
the whole segmentor ('SERA') and through the text encoder + backbone with
adapters removed ('bare encoders'). Figures: latency at batch 1, throughput
at ``--throughput-batch``, one training step (loss, backward and the
config's optimizer wrapper as training builds it) at ``--batch-size``,
peak memory increase of each, FLOPs at batch 1 and parameter counts,
each with its SERA / bare ratio. The latency of both is also timed in
alternation in one process (``interleaved runs``), whose ratio does not
drift with the machine's speed. Each ``--sweep`` varies one factor and
records SERA's latency, training step and memory per value.

Writes ``benchmark.md``, ``benchmark.csv`` and ``benchmark.png`` to
``--out-dir`` (default ``work_dirs/benchmark/<config name>``). ``--profile``
writes the training step by part (``profile.md``) and, with
``--profile-ops``, by operator (``ops.md``); ``--compare-*`` times the
config against a changed one in alternation in one process
(``compare.md``).
"""
import argparse
import logging
import os
import os.path as osp
from typing import Any, Dict, Optional

from . import run as run_mod
from .plan import (config_imports, config_size, import_config_modules,
                   parse_sweep, plan_jobs, set_input_size)
from .profiling import profile_ops, profile_train_step
from .report import (cpu_kernels, format_compare, format_ops, format_profile,
                     main_notes, main_rows, sweep_rows, write_csv,
                     write_markdown, write_plot)
from .subjects import StepBuilder, build_subject


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
    parser.add_argument('--malloc', choices=('config', 'default'),
                        default='config',
                        help="'config': the measuring processes set glibc "
                        "malloc as training does (the config's "
                        "env_cfg.malloc); 'default': glibc's defaults")
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


def optim_wrapper_of(cfg) -> Optional[Dict[str, Any]]:
    """The config's ``optim_wrapper`` as a plain dict (what the training
    steps update through), or None when it has none."""
    optim = cfg.get('optim_wrapper') if cfg is not None else None
    return optim.to_dict() if hasattr(optim, 'to_dict') else (
        dict(optim) if optim else None)


def compare(args: argparse.Namespace, cfg_model: Dict[str, Any], size: int,
            base: Dict[str, Any], out_dir: str,
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
                b_optim_wrapper=optim_wrapper_of(other),
                cfg_models=dict(a=cfg_model, b=set_input_size(
                    other.model.to_dict(), size)))
    fn = run_mod.measure_compare
    result = run_mod.run_isolated(fn, spec) \
        if args.isolation == 'process' else fn(spec)
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


def profile(args: argparse.Namespace, cfg_model: Dict[str, Any], size: int,
            base: Dict[str, Any], name: str,
            out_dir: str) -> Dict[str, Any]:
    """``--profile``: the training step by part (``profile.md``) and, with
    ``--profile-ops``, by operator (``ops.md``), in this process with the
    threads and malloc settings of ``base`` (as the measuring processes)."""
    import torch
    device = run_mod.setup_process(base)
    runner = StepBuilder(build_subject(cfg_model, 'sera', device), device,
                         args.amp, args.channels_last,
                         optim_wrapper=base.get('optim_wrapper'))
    result = profile_train_step(runner, args.batch_size, size, args.runs,
                                args.warmup)
    setup = (f'device {device}, threads {args.threads}, input '
             f'{size}x{size}, batch {args.batch_size}, runs '
             f'{args.runs} (median, min-max) after {args.warmup} '
             f'warm-up, amp {args.amp}, malloc '
             f'{base["malloc"] or "glibc defaults"}, torch '
             f'{torch.__version__}, random weights of the configured '
             'geometry.')
    text = format_profile(result, name, setup)
    with open(osp.join(out_dir, 'profile.md'), 'w') as f:
        f.write(text)
    print(text)
    out = dict(profile=result)
    if args.profile_ops:
        ops = profile_ops(runner, args.batch_size, size, args.runs,
                          args.warmup, top=args.profile_ops)
        text = format_ops(ops, name, setup)
        with open(osp.join(out_dir, 'ops.md'), 'w') as f:
            f.write(text)
        print(text)
        out['ops'] = ops
    return out


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from sera_mm.utils import setup_runtime
    setup_runtime()  # mmcv.ops fallback, checkpoint safe globals
    import torch
    from mmengine.config import Config

    from sera_mm.utils.config_utils import apply_input_size
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    apply_input_size(cfg)  # the config's one input size, if it sets it
    cfg_model = cfg.model.to_dict()
    name = osp.splitext(osp.basename(args.config))[0]
    out_dir = args.out_dir or osp.join('work_dirs', 'benchmark', name)
    os.makedirs(out_dir, exist_ok=True)
    sweeps = [parse_sweep(s) for s in args.sweep]
    size = args.input_size or config_size(cfg_model)
    if size is None:
        raise ValueError('--input-size is required: the config\'s '
                         'data_preprocessor has no size')
    cfg_model = set_input_size(cfg_model, size)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.isolation == 'none':
        torch.set_num_threads(args.threads)
    cfgs = [cfg]
    other = None
    if args.compare_config:
        other = Config.fromfile(args.compare_config)
        cfgs.append(other)
    malloc = None
    if args.malloc == 'config':
        env_cfg = cfg.get('env_cfg') or {}
        malloc = env_cfg.get('malloc')
        malloc = dict(malloc) if malloc else None
    base = dict(device=device, threads=args.threads, amp=args.amp,
                malloc=malloc,
                channels_last=args.channels_last, size=size,
                runs=args.runs, warmup=args.warmup,
                imports=config_imports(*cfgs),
                optim_wrapper=optim_wrapper_of(cfg))
    import_config_modules(base['imports'])
    if (args.compare_options or args.compare_config or args.compare_amp
            or args.compare_channels_last or args.compare_compile):
        return compare(args, cfg_model, size, base, out_dir, other)
    if args.profile:
        return profile(args, cfg_model, size, base, name, out_dir)

    jobs = plan_jobs(base, cfg_model, sweeps, batch_size=args.batch_size,
                     throughput_batch=args.throughput_batch,
                     skip_train=args.skip_train,
                     memory_steps=args.memory_steps,
                     flops=not args.no_flops, paired=not args.no_paired)
    results = run_mod.run_jobs(jobs, args.isolation)

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

    notes = main_notes(device, bool(paired), sera, bare)
    setup = (f'device {device}, threads {args.threads}, input {size}x{size}'
             f', runs {args.runs} (median) after {args.warmup} warm-up, '
             f'amp {args.amp}, channels_last {args.channels_last}, '
             f'malloc {malloc or "glibc defaults"}, '
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
