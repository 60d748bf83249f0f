"""Running the measuring jobs: one subject's figures (:func:`measure`),
both subjects' latency in alternation (:func:`measure_paired`), two
models timed in alternation (:func:`measure_compare`), each in this
process or in a fresh spawned one (:func:`run_isolated`; process
isolation gives every subject a clean memory baseline, and the process's
``ru_maxrss`` then belongs to that subject alone).
"""
import gc
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from sera_mm.utils.param_report import parameter_report
from .measure import (check_runs, count_flops, current_rss_bytes,
                      max_rss_bytes, memory_over_steps, peak_of, time_runs)
from .plan import SUBJECTS, Job, import_config_modules
from .stats import median, pair_ratios, spread
from .subjects import StepBuilder, build_subject


def setup_process(spec: Dict[str, Any]) -> str:
    """Apply ``spec['threads']`` and ``spec['malloc']`` (glibc malloc
    settings as training applies them from ``env_cfg.malloc``; None leaves
    the allocator alone), import ``spec['imports']``, seed torch; return
    the device."""
    from sera_mm.utils.allocator import apply_malloc_cfg
    apply_malloc_cfg(spec.get('malloc'))
    import_config_modules(spec.get('imports', ()))
    if spec.get('threads'):
        torch.set_num_threads(int(spec['threads']))
    torch.manual_seed(0)
    return spec.get('device', 'cpu')

def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one subject. ``spec`` keys: ``cfg_model`` (plain dict),
    ``subject`` ('sera'|'bare'), ``device``, ``threads``, ``amp``,
    ``channels_last``, ``size``, ``latency_batch``, ``throughput_batch``
    (0 = skip), ``train_batch`` (0 = skip), ``runs``, ``warmup``,
    ``flops`` (bool), ``params`` (bool), ``memory_steps`` (0 = skip; see
    :func:`memory_over_steps`), ``optim_wrapper`` (the config's optimizer
    wrapper that SERA's training step updates through; None: a plain
    AdamW).

    Returns a dict of figures (seconds, bytes, counts) with keys
    ``latency_s``, ``latency_mem``, ``throughput_ips``, ``throughput_mem``,
    ``train_s``, ``train_mem``, ``ready_rss``, ``max_rss``, ``flops``,
    ``flops_note``, ``params_total``, ``params_trainable``,
    ``backbone_fraction`` (missing when not measured).
    """
    device = setup_process(spec)
    dtype = torch.device(device).type
    model = build_subject(spec['cfg_model'], spec['subject'], device)
    runner = StepBuilder(
        model, device, bool(spec.get('amp')),
        bool(spec.get('channels_last')),
        optim_wrapper=(spec.get('optim_wrapper')
                       if spec['subject'] == 'sera' else None))
    size, runs, warmup = spec['size'], spec['runs'], spec['warmup']
    out: Dict[str, Any] = dict(subject=spec['subject'])
    gc.collect()
    out['ready_rss'] = current_rss_bytes()
    if spec.get('params', True):
        rep = parameter_report(model)
        out['params_total'] = rep['total']
        out['params_trainable'] = rep['trainable']
        out['backbone_fraction'] = rep['backbone_fraction']
    if spec.get('latency_batch'):
        b = int(spec['latency_batch'])
        step = runner.infer(b, size)
        out['latency_s'], out['latency_runs'] = time_runs(step, runs, warmup)
        out['latency_mem'] = peak_of(step, dtype)
    if spec.get('throughput_batch'):
        b = int(spec['throughput_batch'])
        step = runner.infer(b, size)
        t, _ = time_runs(step, runs, warmup)
        out['throughput_ips'] = b / t
        out['throughput_mem'] = peak_of(step, dtype)
    if spec.get('train_batch'):
        b = int(spec['train_batch'])
        step = runner.train_step(b, size)
        if step is None:
            out['train_note'] = 'nothing trainable'
        else:
            out['train_s'], _ = time_runs(step, runs, warmup)
            out['train_mem'] = peak_of(step, dtype)
    if spec.get('train_batch') and spec.get('memory_steps'):
        out.update(memory_over_steps(
            runner, int(spec['train_batch']), size,
            int(spec['memory_steps'])))
    # the memory steps report the peak before their profiled step
    out.setdefault('max_rss', max_rss_bytes())
    if spec.get('flops'):
        out['flops'], out['flops_note'] = count_flops(runner, size)
    return out

def measure_paired(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Inference latency of both subjects, timed in alternation.

    Builds ``'sera'`` and ``'bare'`` in one process and times them in
    pairs (which subject runs first alternates between pairs), so that
    slow drifts of the machine's speed (other tenants, frequency scaling)
    hit both alike. ``spec`` keys as :func:`measure` (``latency_batch``,
    ``runs``, ``warmup``, ...).

    Returns:
        dict with ``sera_s`` and ``bare_s`` (median seconds),
        ``ratio`` (median of the per-pair ratios sera / bare) and
        ``ratios`` (every pair's ratio).
    """
    runs, warmup = int(spec['runs']), int(spec['warmup'])
    check_runs(runs, warmup)
    device = setup_process(spec)
    amp, cl = bool(spec.get('amp')), bool(spec.get('channels_last'))
    steps = {}
    for subject in SUBJECTS:
        model = build_subject(spec['cfg_model'], subject, device)
        steps[subject] = StepBuilder(model, device, amp, cl).infer(
            int(spec.get('latency_batch', 1)), spec['size'])
    for _ in range(warmup):
        for subject in SUBJECTS:
            steps[subject]()
    times: Dict[str, List[float]] = {s: [] for s in SUBJECTS}
    for i in range(runs):
        order = SUBJECTS if i % 2 == 0 else SUBJECTS[::-1]
        for subject in order:
            t0 = time.perf_counter()
            steps[subject]()
            times[subject].append(time.perf_counter() - t0)
    ratios = pair_ratios(times['sera'], times['bare'])
    return dict(sera_s=median(times['sera']), bare_s=median(times['bare']),
                ratio=median(ratios), ratios=ratios)

def measure_compare(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Two models (e.g. one config before and after a change) timed in
    alternation in one process, so both see the same machine speed.

    ``spec`` keys: ``cfg_models`` (``{'a': cfg, 'b': cfg}``), ``kind``
    (``'train'``: forward loss + backward + AdamW at ``train_batch``;
    ``'infer'``: inference at ``latency_batch``), ``size``, ``runs``,
    ``warmup``, ``device``, ``threads``, ``amp``, ``channels_last``
    (``b_amp`` / ``b_channels_last`` / ``b_compile``: b's own, default
    a's; ``compile`` defaults to False), ``optim_wrapper`` /
    ``b_optim_wrapper`` (the configs' optimizer wrappers the training steps
    update through; None: a plain AdamW); with
    ``vary`` every training step uses a new batch (so per-image caches see
    real traffic) instead of one batch repeated.

    Returns:
        ``a`` and ``b`` (``min``/``median``/``max`` seconds), ``ratios``
        (b / a per pair; which runs first alternates between pairs),
        ``ratio`` (their median: below 1 means b is faster) and ``first``
        (seconds of each model's first call, which includes compiling;
        needs ``warmup`` >= 1, else None).

    Raises:
        ValueError: bad ``runs``/``warmup`` or an unknown ``kind``, or a
            model with nothing to train for ``kind='train'``.
    """
    runs, warmup = int(spec['runs']), int(spec['warmup'])
    check_runs(runs, warmup)
    kind = spec.get('kind', 'train')
    if kind not in ('train', 'infer'):
        raise ValueError(f"kind must be 'train' or 'infer', got {kind!r}")
    device = setup_process(spec)
    amp, cl = bool(spec.get('amp')), bool(spec.get('channels_last'))
    comp = bool(spec.get('compile'))
    formats = dict(a=(amp, cl, comp),
                   b=(bool(spec.get('b_amp', amp)),
                      bool(spec.get('b_channels_last', cl)),
                      bool(spec.get('b_compile', comp))))
    optim = dict(a=spec.get('optim_wrapper'),
                 b=spec.get('b_optim_wrapper', spec.get('optim_wrapper')))
    steps = {}
    for key in ('a', 'b'):
        runner = StepBuilder(build_subject(spec['cfg_models'][key], 'sera',
                                           device), device, *formats[key],
                             optim_wrapper=optim[key])
        if kind == 'train':
            steps[key] = runner.train_step(int(spec['train_batch']),
                                           spec['size'],
                                           vary=bool(spec.get('vary')))
            if steps[key] is None:
                raise ValueError(f'model {key}: nothing is trainable')
        else:
            steps[key] = runner.infer(int(spec.get('latency_batch', 1)),
                                      spec['size'])
    first: Optional[Dict[str, float]] = {} if warmup else None
    for w in range(warmup):
        for key in ('a', 'b'):
            t0 = time.perf_counter()
            steps[key]()
            if w == 0:
                first[key] = time.perf_counter() - t0
    times: Dict[str, List[float]] = {'a': [], 'b': []}
    for i in range(runs):
        for key in (('a', 'b') if i % 2 == 0 else ('b', 'a')):
            t0 = time.perf_counter()
            steps[key]()
            times[key].append(time.perf_counter() - t0)
    ratios = pair_ratios(times['b'], times['a'])
    return dict(kind=kind, a=spread(times['a']), b=spread(times['b']),
                ratios=ratios, ratio=median(ratios), first=first)

def run_isolated(fn: Callable[[Dict[str, Any]], Dict[str, Any]],
                 spec: Dict[str, Any]) -> Dict[str, Any]:
    """``fn(spec)`` in a fresh spawned process."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(
            max_workers=1, mp_context=mp.get_context('spawn')) as pool:
        return pool.submit(fn, spec).result()

def measure_isolated(spec: Dict[str, Any]) -> Dict[str, Any]:
    """:func:`measure` in a fresh spawned process (clean memory
    baseline, ``max_rss`` then belongs to this subject alone)."""
    return run_isolated(measure, spec)


def run_jobs(jobs: Sequence[Job], isolation: str = 'process',
             progress: bool = True) -> Dict[Tuple, Dict[str, Any]]:
    """Run the planned jobs in order (:func:`measure_paired` for the
    ``('paired', )`` job, :func:`measure` for the others), each in a fresh
    process with ``isolation='process'``; returns ``{tag: figures}``."""
    from tqdm import tqdm
    logger = logging.getLogger('sera_mm.benchmark')
    results: Dict[Tuple, Dict[str, Any]] = {}
    with tqdm(jobs, desc='benchmark', unit='job',
              disable=not progress) as bar:
        for tag, spec in bar:
            bar.set_postfix_str(' '.join(str(t) for t in tag))
            fn = measure_paired if tag == ('paired', ) else measure
            results[tag] = run_isolated(fn, spec) \
                if isolation == 'process' else fn(spec)
            logger.info('%s: %s', tag, {
                k: v for k, v in results[tag].items() if k != 'latency_runs'
            })
    return results
