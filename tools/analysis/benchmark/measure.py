"""Measuring one callable: peak memory, time and FLOPs.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` minus the memory held
before the measurement. On CPU the resident set size (RSS) of the process
is sampled by a background thread (every ``1 ms``) during one extra call
after the timed calls, and the peak increase over the RSS before that call
(freed heap returned to the OS first with ``malloc_trim``) is reported.

Time: the median of ``runs`` calls after ``warmup`` untimed ones.

Tensor memory (:func:`tensor_peak_of`): the peak of live tensors during a
training step, from the profiler's allocation events; independent of the C
heap allocator, like ``torch.cuda.max_memory_allocated`` on a GPU.

FLOPs: mmengine's ``FlopAnalyzer`` (one multiply-add counts as one FLOP),
with a handle for ``aten::scaled_dot_product_attention``.
"""
import gc
import os
import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .subjects import StepBuilder


def current_rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``; falls back to
    ``ru_maxrss``)."""
    try:
        with open('/proc/self/statm') as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def max_rss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (peak since it started)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def release_free_memory() -> None:
    """Give memory freed by Python/torch back to the OS (glibc
    ``malloc_trim``) so an RSS baseline is not inflated by earlier
    allocations; no-op elsewhere."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass

class PeakMemory:
    """Context manager: peak memory increase (bytes) inside the block.

    CUDA: ``max_memory_allocated`` after resetting the peak, minus the
    allocated memory at entry. CPU: RSS sampled every ``interval`` seconds
    by a daemon thread, minus the RSS at entry. Read ``.peak`` after exit.
    """

    def __init__(self, device_type: str = 'cpu',
                 interval: float = 1e-3) -> None:
        self.device_type = device_type
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, current_rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> 'PeakMemory':
        gc.collect()
        release_free_memory()
        if self.device_type == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._max = current_rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device_type == 'cuda':
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._max = max(self._max, current_rss_bytes())
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max - self._base, 0)

def peak_of(fn: Callable[[], Any], device_type: str = 'cpu') -> int:
    """Peak memory increase (bytes) of one more call of ``fn`` (run after
    the timed calls so the sampling thread does not disturb the timing)."""
    with PeakMemory(device_type) as mem:
        out = fn()
    del out
    return mem.peak

def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (None skipped)."""
    seen = {}
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        seen[(t.device, st.data_ptr())] = st.nbytes()
    return sum(seen.values())


def long_lived_tensors(model: nn.Module, optimizer=None) -> List[Any]:
    """What a training step starts with: parameters, buffers, gradients
    and the optimizer's state tensors."""
    out = list(model.parameters()) + list(model.buffers())
    out += [p.grad for p in model.parameters()]
    if optimizer is not None:
        for state in optimizer.state.values():
            out += [v for v in state.values() if torch.is_tensor(v)]
    return out


def tensor_peak_of(fn: Callable[[], Any], long_lived: Sequence[Any],
                   device_type: str = 'cpu') -> Optional[int]:
    """Peak bytes of live tensors during one call of ``fn``: the tensors
    alive before it (``long_lived``: parameters, gradients, optimizer
    state) plus the highest running sum of the allocations and frees that
    ``torch.profiler`` records (``profile_memory``). Unlike the process's
    RSS it does not depend on the C heap allocator; it is what
    ``torch.cuda.max_memory_allocated`` reports on a GPU (used there).
    None where this torch's profiler does not expose its events.

    The profiler does not see a free of memory allocated before it
    started: ``fn`` must not free what ``long_lived`` holds (drop the
    gradients before, as :func:`memory_over_steps` does)."""
    before = storage_bytes(long_lived)
    if device_type == 'cuda':
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start + before
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) \
            as prof:
        fn()
    try:  # the profiler's raw events (no public accessor for them)
        events = sorted(
            (e.start_ns(), e.nbytes())
            for e in prof.profiler.kineto_results.events()
            if e.name() == '[memory]' and e.device_type().name == 'CPU')
    except AttributeError:  # another torch: say n/a rather than guess
        return None
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return before + peak


def check_runs(runs: int, warmup: int) -> None:
    """Raise ValueError unless ``runs >= 1`` and ``warmup >= 0``."""
    if runs < 1 or warmup < 0:
        raise ValueError(f'runs must be >= 1 and warmup >= 0, got '
                         f'runs={runs}, warmup={warmup}')

def time_runs(fn: Callable[[], Any], runs: int,
              warmup: int) -> Tuple[float, List[float]]:
    """Run ``fn`` ``warmup`` times, then time ``runs`` calls; returns
    (median seconds, all timings)."""
    check_runs(runs, warmup)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times

def _sdpa_flop_handle(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``aten::scaled_dot_product_attention``: q (..., L, D),
    k (..., S, D), v (..., S, Dv) -> L*S*D (scores) + L*S*Dv (mix), per
    leading batch/head element."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    lead = int(np.prod(q[:-2])) if len(q) > 2 else 1
    return lead * q[-2] * k[-2] * (q[-1] + v[-1])

def count_flops(runner: StepBuilder, size: int) -> Tuple[Optional[float], str]:
    """FLOPs (one multiply-add = one FLOP) of one forward at batch 1 with
    mmengine's ``FlopAnalyzer``; returns (flops or None, note)."""
    try:
        from mmengine.analysis import FlopAnalyzer
        data = runner.prepare(1, size, training=False)
        samples = data['data_samples']
        model = runner.model
        texts = [s.metainfo['text'] for s in samples]

        class _ImageOnly(nn.Module):

            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, img):
                if runner.bare:
                    return tuple(self.model(img, texts))
                return self.model._forward(img, samples)

        model.eval()
        with torch.no_grad():
            analyzer = FlopAnalyzer(_ImageOnly(), (data['inputs'], ))
            analyzer.set_op_handle('aten::scaled_dot_product_attention',
                                   _sdpa_flop_handle)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            analyzer.tracer_warnings('none')
            total = float(analyzer.total())
            skipped = analyzer.unsupported_ops()
        note = ''
        if skipped:
            top = ', '.join(f'{k}' for k, _ in skipped.most_common(4))
            note = f'ops not counted: {top}'
        return total, note
    except Exception as exc:  # tracing can fail on some ops
        return None, f'n/a: {type(exc).__name__}: {str(exc)[:120]}'

def memory_over_steps(runner: StepBuilder, batch: int, size: int,
                      steps: int) -> Dict[str, Any]:
    """Process memory over ``steps`` training steps of a fresh optimizer,
    each on a new batch (other images and expressions).

    Returns:
        ``train_rss_steps`` (RSS after each step, bytes, after a garbage
        collection), ``train_rss_first`` / ``train_rss_last`` (after the
        first and the last step), ``train_rss_growth`` (last minus
        second: the growth once the optimizer state exists) and
        ``train_tensor_peak`` (:func:`tensor_peak_of` one more step) and
        ``max_rss`` (``ru_maxrss`` before that profiled step); empty when
        nothing is trainable.

    Raises:
        ValueError: ``steps`` < 2.
    """
    if steps < 2:
        raise ValueError(f'memory steps must be >= 2, got {steps}')
    step = runner.train_step(batch, size, vary=True)
    if step is None:
        return {}
    rss = []
    for _ in range(steps):
        step()
        gc.collect()
        rss.append(current_rss_bytes())
    # the process peak before the profiled step (the profiler's own
    # buffers would count otherwise)
    max_rss = max_rss_bytes()
    # the step's zero_grad would free gradients the profiler never saw
    # allocated; drop them first (the step makes new ones)
    step.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    peak = tensor_peak_of(
        step, long_lived_tensors(runner.model, step.optimizer),
        runner.device_type)
    return dict(train_rss_steps=rss, train_rss_first=rss[0],
                train_rss_last=rss[-1], train_rss_growth=rss[-1] - rss[1],
                train_tensor_peak=peak, max_rss=max_rss)
