"""Runner hooks of the expert routers: temperature annealing and routing
diagnostics in the training log."""
import json
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from sera_mm.registry import HOOKS

_SCHEDULES = ('linear', 'cosine', 'exp')


def _routers(runner) -> List:
    from sera_mm.models.routers import ExpertRouter
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, ExpertRouter)]


@HOOKS.register_module()
class RouterTemperatureHook(Hook):
    """Anneal the softmax temperature of every learned router.

    The temperature goes from ``start`` at iteration ``begin`` to ``end`` at
    iteration ``stop`` (``None``: the run's ``max_iters``) and stays there;
    ``schedule`` is 'linear', 'cosine' (half cosine) or 'exp' (geometric).
    The value depends only on the iteration, so a resumed run continues the
    same schedule, and the routers store it in a buffer, so the checkpoint
    keeps the final temperature for testing.

    Args:
        start: temperature at ``begin`` (> 0).
        end: temperature from ``stop`` on (> 0).
        begin: first iteration of the schedule.
        stop: last iteration of the schedule, or None.
        schedule: 'linear', 'cosine' or 'exp'.
        routers: substrings of router module names to anneal (e.g.
            ``['neck.']``); None anneals all.
    """

    priority = 'NORMAL'

    def __init__(self,
                 start: float = 1.0,
                 end: float = 0.3,
                 begin: int = 0,
                 stop: Optional[int] = None,
                 schedule: str = 'cosine',
                 routers: Optional[Sequence[str]] = None) -> None:
        if not (start > 0 and end > 0):
            raise ValueError(f'start and end temperatures must be > 0, got '
                             f'{start}, {end}')
        if schedule not in _SCHEDULES:
            raise ValueError(f'schedule must be one of {_SCHEDULES}, got '
                             f'{schedule!r}')
        if begin < 0 or (stop is not None and stop <= begin):
            raise ValueError(f'need 0 <= begin < stop, got begin={begin}, '
                             f'stop={stop}')
        self.start, self.end = float(start), float(end)
        self.begin, self.stop = int(begin), stop
        self.schedule = schedule
        self.routers = None if routers is None else list(routers)

    def value(self, it: int, max_iters: int) -> float:
        """Temperature at iteration ``it``."""
        stop = self.stop if self.stop is not None else max_iters
        if stop <= self.begin:
            return self.end
        t = min(max((it - self.begin) / (stop - self.begin), 0.0), 1.0)
        if self.schedule == 'linear':
            return self.start + (self.end - self.start) * t
        if self.schedule == 'cosine':
            return self.end + (self.start - self.end) * 0.5 * (
                1 + math.cos(math.pi * t))
        return self.start * (self.end / self.start) ** t

    def _apply(self, runner, value: float) -> None:
        for name, router in _routers(runner):
            if router.mode != 'learned':
                continue
            if self.routers is None or any(k in name for k in self.routers):
                router.temperature = value

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._apply(runner, self.value(runner.iter, runner.max_iters))

    def after_train(self, runner) -> None:
        self._apply(runner, self.value(runner.max_iters, runner.max_iters))


@HOOKS.register_module()
class RouterStatsHook(Hook):
    """Routing diagnostics in the training log.

    After every training iteration the hook collects each router's routing
    distribution (``last_weights``, (B, E)) with the samples' ``expr_type``;
    every ``interval`` iterations it logs, per router, the mean weight of
    every expert per expression type, the mean per-sample entropy (bits and
    ratio to log2 E) and the mutual information (bits) between expression
    type and top expert over the collected window, then starts a new
    window. Scalars go to the message hub (``routing/<router>/mi_bits``,
    ``.../entropy_ratio``) and one summary line to the log; the full
    numbers of every window (per-type mean weights of every router) are
    appended to ``<log_dir>/routing_stats.jsonl``.

    Args:
        interval: iterations per window.
        max_window: at most this many samples kept per router per window.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 100, max_window: int = 4096) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = int(interval)
        self.max_window = int(max_window)
        self._weights: Dict[str, List[np.ndarray]] = {}
        self._labels: List[Optional[str]] = []
        self._experts: Dict[str, List[str]] = {}

    def _reset(self) -> None:
        self._weights, self._labels = {}, []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        samples = (data_batch or {}).get('data_samples') or []
        if len(self._labels) < self.max_window:
            labels = []
            for s in samples:
                meta = s.metainfo if hasattr(s, 'metainfo') else s
                t = meta.get('expr_type')
                labels.append(None if t is None else str(t))
            n = None
            for name, router in _routers(runner):
                w = router.last_weights
                if w is None:
                    continue
                w = w.float().cpu().numpy()
                if n is None:
                    n = w.shape[0]
                if w.shape[0] != len(labels):
                    continue  # routed on something else than this batch
                self._weights.setdefault(name, []).append(w)
                self._experts[name] = list(router.expert_names)
            if n is not None and n == len(labels):
                self._labels.extend(labels)
        if self.every_n_train_iters(runner, self.interval):
            self.log_window(runner)

    def log_window(self, runner) -> Dict[str, dict]:
        """Log the diagnostics of the current window and reset it."""
        from sera_mm.visualization.router_stats import routing_diagnostics
        results = {}
        per_types = []
        labels = self._labels
        for name, chunks in self._weights.items():
            weights = np.concatenate(chunks)
            if weights.shape[0] != len(labels):
                continue
            d = routing_diagnostics(weights, labels, self._experts[name])
            results[name] = d
            runner.message_hub.update_scalar(f'routing/{name}/mi_bits',
                                             d['mutual_info_bits'])
            runner.message_hub.update_scalar(
                f'routing/{name}/entropy_ratio', d['entropy_ratio'])
            types = sorted({t for t in labels if t is not None})
            per_type = {}
            for t in types:
                sel = np.array([x == t for x in labels])
                per_type[t] = dict(zip(self._experts[name],
                                       weights[sel].mean(0).tolist()))
            per_types.append(per_type)
        if results:
            best = max(results.items(),
                       key=lambda kv: kv[1]['mutual_info_bits'])
            print_log(
                f'routing at iter {runner.iter + 1} ({len(labels)} samples):'
                f' highest MI {best[1]["mutual_info_bits"]:.3f} bits '
                f'({best[0]}), mean entropy ratio '
                f'{np.mean([d["entropy_ratio"] for d in results.values()]):.2f}'
                , logger='current')
            record = dict(iter=runner.iter + 1, samples=len(labels),
                          routers={n: dict(d, per_type=pt) for (n, d), pt
                                   in zip(results.items(), per_types)})
            path = osp.join(runner.log_dir, 'routing_stats.jsonl')
            with open(path, 'a', encoding='utf-8') as f:
                f.write(json.dumps(record) + '\n')
        self._reset()
        return results
