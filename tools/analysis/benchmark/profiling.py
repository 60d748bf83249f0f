"""Where a training step's time goes: the forward time of each part of
the model (:func:`profile_train_step`) and the operators with the most
self time (:func:`profile_ops`, ``torch.profiler``)."""
import time
from typing import Any, Callable, Dict, List

import torch
import torch.nn as nn

from .measure import check_runs
from .subjects import StepBuilder


def profile_parts(model: nn.Module) -> Dict[str, nn.Module]:
    """The parts a training step is broken down into: the text encoder,
    the backbone's pretrained encoder (its blocks, adapters excluded), each
    adapter, the neck and the decode head (names -> modules)."""
    parts: Dict[str, nn.Module] = {}
    for name in ('text_encoder', 'backbone', 'neck', 'decode_head'):
        module = getattr(model, name, None)
        if module is not None:
            parts[name] = module
    adapters = getattr(getattr(model, 'backbone', None), 'adapters', None)
    if adapters is not None:
        for key, adapter in adapters.items():
            parts[f'backbone.adapters.{key}'] = adapter
    return parts

class _PartTimer:
    """Forward wall time of each part of a model: the part's ``forward``
    is wrapped (an instance attribute, so calls through ``self.forward``
    inside the model count too)."""

    def __init__(self, parts: Dict[str, nn.Module], sync: Callable) -> None:
        self.parts = parts
        self._sync = sync
        self.forward: Dict[str, float] = {}
        for name, module in parts.items():
            module.forward = self._wrap(name, module.forward)

    def reset(self) -> None:
        self.forward = {}

    def _wrap(self, name: str, fn: Callable) -> Callable:
        def forward(*args, **kwargs):
            self._sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self._sync()
            self.forward[name] = (self.forward.get(name, 0.0) +
                                  time.perf_counter() - start)
            return out
        return forward

    def remove(self) -> None:
        for module in self.parts.values():
            module.__dict__.pop('forward', None)

def profile_ops(runner: StepBuilder, batch: int, size: int, runs: int,
                warmup: int, top: int = 20) -> Dict[str, Any]:
    """Operator-level profile of the training step (``torch.profiler``):
    the ``top`` operators by self time, grouped by operator and input
    shapes, per step (forward and backward operators alike, e.g.
    ``aten::convolution_backward``).

    Returns:
        ``rows``: dicts with ``op``, ``shapes`` (input shapes, text),
        ``calls`` and ``self_ms`` per step and ``share`` of the step's
        total self time; ``total_ms`` (all operators, per step) and
        ``by_op`` (self ms per step of each operator name, all shapes).
    """
    from torch.profiler import ProfilerActivity, profile
    check_runs(runs, warmup)
    step = runner.train_step(batch, size)
    if step is None:
        raise ValueError('nothing is trainable')
    for _ in range(warmup):
        step()
    activities = [ProfilerActivity.CPU]
    if runner.device_type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(runs):
            step()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / runs
    by_op: Dict[str, float] = {}
    for e in events:
        by_op[e.key] = by_op.get(e.key, 0.0) + (
            e.self_cpu_time_total / 1e3 / runs)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total,
                    reverse=True)[:top]
    rows = [dict(op=e.key, shapes=str(e.input_shapes),
                 calls=e.count / runs,
                 self_ms=e.self_cpu_time_total / 1e3 / runs,
                 share=(e.self_cpu_time_total / 1e3 / runs) / total
                 if total else 0.0) for e in ranked]
    return dict(rows=rows, total_ms=total,
                by_op=dict(sorted(by_op.items(), key=lambda kv: -kv[1])))

def profile_train_step(runner: StepBuilder, batch: int, size: int, runs: int,
                       warmup: int) -> Dict[str, Any]:
    """Per-part forward times (ms, median over ``runs``) of the training
    step, with the step's total, its forward (loss), backward and optimizer
    parts. Nested parts (the adapters inside the backbone) are included in
    their parent's time; ``backbone without adapters`` subtracts them.
    Backward is reported for the whole model only: autograd interleaves
    the parts' backward passes, so a per-part split would need the
    profiler's op-level attribution. The optimizer part is the configured
    optimizer's step alone (gradient clipping is not timed here; the
    training step of :meth:`StepBuilder.train_step` includes it).
    """
    import statistics
    check_runs(runs, warmup)
    model = runner.model
    optimizer, _ = runner.optimizer()
    data = runner.prepare(batch, size, training=True)
    timer = _PartTimer(profile_parts(model), runner.sync)
    rows: Dict[str, List[float]] = {}
    model.train()
    try:
        for i in range(warmup + runs):
            timer.reset()
            optimizer.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with runner.autocast():
                losses = model.loss(data['inputs'], data['data_samples'])
                loss = sum(v if torch.is_tensor(v) else sum(v)
                           for k, v in losses.items() if 'loss' in k)
            runner.sync()
            t1 = time.perf_counter()
            loss.backward()
            runner.sync()
            t2 = time.perf_counter()
            optimizer.step()
            runner.sync()
            t3 = time.perf_counter()
            if i < warmup:
                continue
            record = {'step': t3 - t0, 'forward (loss)': t1 - t0,
                      'backward': t2 - t1, 'optimizer': t3 - t2}
            for name, value in timer.forward.items():
                record[f'{name}/forward'] = value
            adapters = [k for k in timer.forward
                        if k.startswith('backbone.adapters.')]
            if 'backbone' in timer.forward:
                record['backbone without adapters/forward'] = (
                    timer.forward['backbone'] -
                    sum(timer.forward.get(a, 0.0) for a in adapters))
            for key, value in record.items():
                rows.setdefault(key, []).append(value * 1000.0)
    finally:
        timer.remove()
    return {k: dict(median=statistics.median(v), min=min(v), max=max(v))
            for k, v in rows.items()}
