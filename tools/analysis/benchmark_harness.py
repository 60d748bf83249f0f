"""Performance measurements of a SERA model against its bare encoders.

The model is built with random weights of the configured geometry (no
download). Every figure is measured for two subjects on the same synthetic
input:

* ``'sera'``: the whole segmentor (text encoder, adapted backbone, fusion
  neck, head, post-processing);
* ``'bare'``: the text encoder and the backbone with its adapters removed
  (``adapter=None``), i.e. the cost of the frozen encoders alone.

Figures: inference latency (median of ``runs`` after ``warmup`` runs),
throughput (images/s), one training step (forward loss, backward, AdamW on
the trainable parameters), peak memory, FLOPs (mmengine's analyser; one
multiply-add counts as one FLOP) and parameter counts.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` minus the memory held
before the measurement. On CPU the resident set size (RSS) of the process
is sampled by a background thread (every ``1 ms``) during one extra call
after the timed calls, and the peak increase over the RSS before that call
(freed heap returned to the OS first with ``malloc_trim``) is reported;
with process isolation (the default of the command-line tool) each
subject runs in a fresh spawned process so the baseline holds only the
built model, and the process's ``ru_maxrss`` is reported too.
"""
import copy
import gc
import os
import statistics
import threading
import time
from contextlib import nullcontext
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from sera_mm.utils.param_report import parameter_report

ADAPTER_EXPERTS = ('spatial', 'context', 'boundary', 'semantic')
FUSION_EXPERTS = ('identity', 'conv3x3', 'dilated3x3', 'coord', 'multiscale')
SWEEP_KEYS = ('input_size', 'batch', 'num_experts', 'adapter_layers')
SUBJECTS = ('sera', 'bare')

EXPRESSIONS = (
    'the red car on the left',
    'man in a blue shirt holding an umbrella',
    'second bowl from the right',
    'the dog sitting next to the bicycle behind the bench',
    'top left corner of the table',
    'small white cup',
    'person partially hidden by the door frame',
    'the larger of the two green balls',
)


# --------------------------------------------------------------- config edits
def _get(node: Any, key: str, default: Any = None) -> Any:
    return node.get(key, default) if hasattr(node, 'get') else default


def parse_sweep(text: str) -> Tuple[str, List[int]]:
    """``'key=v1,v2,...'`` -> (key, [int values]).

    Raises:
        ValueError: unknown key, missing ``=``, or a value that is not a
            non-negative integer.
    """
    if '=' not in text:
        raise ValueError(f"--sweep must look like 'key=v1,v2', got {text!r}")
    key, values = text.split('=', 1)
    key = key.strip()
    if key not in SWEEP_KEYS:
        raise ValueError(f'--sweep key must be one of {SWEEP_KEYS}, '
                         f'got {key!r}')
    out = []
    for v in values.split(','):
        v = v.strip()
        if not v:
            continue
        if not v.isdigit():
            raise ValueError(f'--sweep {key}: values must be non-negative '
                             f'integers, got {v!r}')
        out.append(int(v))
    if not out:
        raise ValueError(f'--sweep {key}: no values given in {text!r}')
    return key, out


def set_input_size(cfg_model: dict, size: int) -> dict:
    """Copy of a model config whose data preprocessor pads to ``size``.

    The letterbox of the synthetic inputs follows the size given to the
    measuring functions; the ViT backbones interpolate their position
    embeddings, so only the preprocessor's ``size`` changes. ``size`` must
    be a multiple of the backbone's patch size when it has one.

    Raises:
        ValueError: ``size`` is not positive or not a multiple of the patch.
    """
    if size <= 0:
        raise ValueError(f'input_size must be positive, got {size}')
    cfg = copy.deepcopy(cfg_model)
    patch = _get(_get(_get(cfg, 'backbone', {}), 'config', {}), 'patch_size')
    if patch and size % int(patch):
        raise ValueError(f'input_size must be a multiple of the backbone '
                         f'patch size {patch}, got {size}')
    pre = _get(cfg, 'data_preprocessor')
    if pre is not None and _get(pre, 'size') is not None:
        pre['size'] = (size, size)
    return cfg


def set_num_experts(cfg_model: dict, num: int) -> dict:
    """Copy of a model config keeping the first ``num`` experts of the
    backbone adapters (default order ``ADAPTER_EXPERTS``) and of the fusion
    neck (default order ``FUSION_EXPERTS``).

    Raises:
        ValueError: ``num`` < 1 or more than the experts available.
    """
    cfg = copy.deepcopy(cfg_model)
    if num < 1:
        raise ValueError(f'num_experts must be >= 1, got {num}')
    adapter = _get(_get(cfg, 'backbone', {}), 'adapter')
    if adapter is not None:
        experts = tuple(_get(adapter, 'experts', ADAPTER_EXPERTS))
        if num > len(experts):
            raise ValueError(f'num_experts={num} but the adapter has only '
                             f'{len(experts)} experts {experts}')
        adapter['experts'] = experts[:num]
    neck = _get(cfg, 'neck')
    if neck is not None and _get(neck, 'type') == 'SERAFusion':
        experts = tuple(_get(neck, 'experts', FUSION_EXPERTS))
        neck['experts'] = experts[:min(num, len(experts))]
    return cfg


def evenly_spaced_blocks(num: int, last: int) -> List[int]:
    """``num`` block indices evenly spaced in ``[0, last]`` ending at
    ``last`` (e.g. 6 of 0..11 -> [1, 3, 5, 7, 9, 11])."""
    if num < 0 or num > last + 1:
        raise ValueError(f'adapter_layers must be in [0, {last + 1}], '
                         f'got {num}')
    step = (last + 1) / max(num, 1)
    return sorted({last - int(round(k * step)) for k in range(num)})


def set_adapter_layers(cfg_model: dict, num: int) -> dict:
    """Copy of a model config with adapters after ``num`` evenly spaced
    blocks up to the last output block; ``num=0`` removes the adapters
    (``adapter=None``).

    Raises:
        ValueError: the config has no backbone ``out_indices`` or ``num`` is
            out of range.
    """
    cfg = copy.deepcopy(cfg_model)
    backbone = _get(cfg, 'backbone')
    if backbone is None:
        raise ValueError('model config has no backbone')
    if num == 0:
        backbone['adapter'] = None
        backbone['adapter_indices'] = ()
        return cfg
    out_indices = _get(backbone, 'out_indices')
    if not out_indices:
        raise ValueError('backbone config needs out_indices to place '
                         'adapters')
    if _get(backbone, 'adapter') is None:
        raise ValueError('backbone config has no adapter to place')
    backbone['adapter_indices'] = tuple(
        evenly_spaced_blocks(num, max(out_indices)))
    return cfg


def apply_sweep(cfg_model: dict, key: str, value: int) -> dict:
    """Copy of ``cfg_model`` with one sweep factor set (``batch`` leaves the
    config unchanged; it changes the measuring batch)."""
    if key == 'input_size':
        return set_input_size(cfg_model, value)
    if key == 'num_experts':
        return set_num_experts(cfg_model, value)
    if key == 'adapter_layers':
        return set_adapter_layers(cfg_model, value)
    if key == 'batch':
        if value < 1:
            raise ValueError(f'batch must be >= 1, got {value}')
        return copy.deepcopy(cfg_model)
    raise ValueError(f'unknown sweep key {key!r}, expected one of '
                     f'{SWEEP_KEYS}')


def bare_encoders_cfg(cfg_model: dict) -> dict:
    """Copy of a model config whose backbone has no adapters."""
    return set_adapter_layers(cfg_model, 0)


# --------------------------------------------------------------- subjects
class BareEncoders(nn.Module):
    """Text encoder + backbone (no adapters) of a built segmentor.

    ``forward(inputs (B, 3, H, W), texts: list of B str)`` returns the
    backbone grids ``[(B, C_i, h_i, w_i)]``.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.data_preprocessor = segmentor.data_preprocessor
        self.text_encoder = segmentor.text_encoder
        self.backbone = segmentor.backbone

    def forward(self, inputs: torch.Tensor,
                texts: Sequence[str]) -> List[torch.Tensor]:
        return self.backbone(inputs, self.text_encoder(list(texts)))


def build_subject(cfg_model: dict, subject: str,
                  device: str = 'cpu') -> nn.Module:
    """Build the segmentor (``'sera'``) or its bare encoders (``'bare'``)
    with random weights of the configured geometry, on ``device``."""
    import sera_mm  # noqa: F401 (mmcv.ops fallback before mmseg)
    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    from sera_mm.utils.config_utils import random_init_cfg
    if subject not in SUBJECTS:
        raise ValueError(f'subject must be one of {SUBJECTS}, got '
                         f'{subject!r}')
    register_all_modules()
    cfg = random_init_cfg(cfg_model, force=True)
    if subject == 'bare':
        cfg = bare_encoders_cfg(cfg)
    model = MODELS.build(cfg)
    if subject == 'bare':
        model = BareEncoders(model)
    return model.to(device)


def synthetic_batch(batch: int,
                    size: int,
                    with_gt: bool = False,
                    seed: int = 0) -> dict:
    """A data batch like the test pipeline's: ``inputs`` list of uint8
    (3, size, size) images, ``data_samples`` SegDataSamples with varied
    expressions and letterbox metainfo (no padding)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    if batch < 1 or size < 1:
        raise ValueError(f'batch and size must be >= 1, got batch={batch}, '
                         f'size={size}')
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(batch):
        inputs.append(
            torch.randint(0, 256, (3, size, size), generator=gen,
                          dtype=torch.uint8))
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(size, size),
                pad_shape=(size, size),
                ori_shape=(size, size),
                img_padding_size=[0, 0, 0, 0],
                scale_factor=(1.0, 1.0),
                flip=False,
                flip_direction=None,
                text=EXPRESSIONS[(i + seed * batch) % len(EXPRESSIONS)],
                sent_id=i))
        if with_gt:
            mask = torch.zeros((1, size, size), dtype=torch.int64)
            mask[:, size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
            sample.gt_sem_seg = PixelData(data=mask)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


class Runner:
    """Runs one subject's inference / training step on synthetic batches.

    Args:
        model: a segmentor or :class:`BareEncoders`.
        device: torch device string.
        amp: autocast (bfloat16 on CPU, float16 on CUDA).
        channels_last: model and inputs in channels_last.
        compile: run the segmentor's ``loss`` / ``predict`` (the bare
            encoders' ``forward``) through ``torch.compile`` (default
            options); the first call compiles.
    """

    def __init__(self,
                 model: nn.Module,
                 device: str = 'cpu',
                 amp: bool = False,
                 channels_last: bool = False,
                 compile: bool = False) -> None:
        self.model = model
        self.device = device
        self.device_type = torch.device(device).type
        self.amp = amp
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.bare = isinstance(model, BareEncoders)
        if compile:
            from sera_mm.engine.launch_utils import compile_model_methods
            compile_model_methods(
                model, ('forward', ) if self.bare else ('loss', 'predict'))

    def autocast(self):
        if not self.amp:
            return nullcontext()
        dtype = torch.float16 if self.device_type == 'cuda' else \
            torch.bfloat16
        return torch.autocast(self.device_type, dtype=dtype)

    def prepare(self, batch: int, size: int, training: bool) -> dict:
        """Synthetic batch through the data preprocessor (on ``device``)."""
        data = synthetic_batch(batch, size, with_gt=training)
        data = self.model.data_preprocessor(data, training)
        if self.channels_last:
            data['inputs'] = data['inputs'].contiguous(
                memory_format=torch.channels_last)
        return data

    def sync(self) -> None:
        if self.device_type == 'cuda':
            torch.cuda.synchronize()

    def infer(self, batch: int, size: int) -> Callable[[], Any]:
        """Closure running one inference (preprocessing included)."""
        data = synthetic_batch(batch, size)
        model = self.model

        def step():
            with torch.no_grad(), self.autocast():
                d = model.data_preprocessor(data, False)
                inputs = d['inputs']
                if self.channels_last:
                    inputs = inputs.contiguous(
                        memory_format=torch.channels_last)
                if self.bare:
                    texts = [s.metainfo['text'] for s in d['data_samples']]
                    out = model(inputs, texts)
                else:
                    out = model.predict(inputs, d['data_samples'])
            self.sync()
            return out

        model.eval()
        return step

    def train_step(self, batch: int, size: int,
                   vary: bool = False) -> Optional[Callable[[], Any]]:
        """Closure running forward loss + backward + AdamW step; None when
        nothing is trainable. The bare encoders' loss is the mean square of
        their grids (a stand-in with the same backward path).

        Args:
            vary: every call trains on a new synthetic batch (other images
                and expressions, as in real training) instead of the same
                one.
        """
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            return None
        optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
        data = self.prepare(batch, size, training=True)
        model = self.model
        calls = [0]

        def step():
            nonlocal data
            if vary and calls[0]:
                synthetic = synthetic_batch(batch, size, with_gt=True,
                                            seed=calls[0])
                data = model.data_preprocessor(synthetic, True)
                if self.channels_last:
                    data['inputs'] = data['inputs'].contiguous(
                        memory_format=torch.channels_last)
            calls[0] += 1
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                if self.bare:
                    texts = [
                        s.metainfo['text'] for s in data['data_samples']
                    ]
                    outs = model(data['inputs'], texts)
                    loss = sum(o.float().pow(2).mean() for o in outs)
                else:
                    losses = model.loss(data['inputs'], data['data_samples'])
                    loss = sum(v if torch.is_tensor(v) else sum(v)
                               for k, v in losses.items() if 'loss' in k)
            loss.backward()
            optimizer.step()
            self.sync()
            return float(loss.detach())

        model.train()
        return step


# --------------------------------------------------------------- memory/time
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


def count_flops(runner: Runner, size: int) -> Tuple[Optional[float], str]:
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


# --------------------------------------------------------------- one job
def import_config_modules(imports: Sequence[str]) -> None:
    """Import the modules a config's ``custom_imports`` names (a project's
    registered parts), so its model builds in this process."""
    import importlib
    for name in imports:
        importlib.import_module(name)


def config_imports(*cfgs) -> List[str]:
    """``custom_imports.imports`` of the given mmengine configs, in order,
    without repeats."""
    names: List[str] = []
    for cfg in cfgs:
        custom = cfg.get('custom_imports') or {}
        for name in custom.get('imports', []) or []:
            if name not in names:
                names.append(name)
    return names


def _setup_process(spec: Dict[str, Any]) -> str:
    """Apply ``spec['threads']``, import ``spec['imports']``, seed torch;
    return the device."""
    import_config_modules(spec.get('imports', ()))
    if spec.get('threads'):
        torch.set_num_threads(int(spec['threads']))
    torch.manual_seed(0)
    return spec.get('device', 'cpu')


def memory_over_steps(runner: 'Runner', batch: int, size: int,
                      steps: int) -> Dict[str, Any]:
    """Process memory over ``steps`` training steps of a fresh optimizer,
    each on a new batch (other images and expressions).

    Returns:
        ``train_rss_steps`` (RSS after each step, bytes, after a garbage
        collection), ``train_rss_first`` / ``train_rss_last`` (after the
        first and the last step) and ``train_rss_growth`` (last minus
        second: the growth once the optimizer state exists); empty when
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
    return dict(train_rss_steps=rss, train_rss_first=rss[0],
                train_rss_last=rss[-1], train_rss_growth=rss[-1] - rss[1])


def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one subject. ``spec`` keys: ``cfg_model`` (plain dict),
    ``subject`` ('sera'|'bare'), ``device``, ``threads``, ``amp``,
    ``channels_last``, ``size``, ``latency_batch``, ``throughput_batch``
    (0 = skip), ``train_batch`` (0 = skip), ``runs``, ``warmup``,
    ``flops`` (bool), ``params`` (bool), ``memory_steps`` (0 = skip; see
    :func:`memory_over_steps`).

    Returns a dict of figures (seconds, bytes, counts) with keys
    ``latency_s``, ``latency_mem``, ``throughput_ips``, ``throughput_mem``,
    ``train_s``, ``train_mem``, ``ready_rss``, ``max_rss``, ``flops``,
    ``flops_note``, ``params_total``, ``params_trainable``,
    ``backbone_fraction`` (missing when not measured).
    """
    device = _setup_process(spec)
    dtype = torch.device(device).type
    model = build_subject(spec['cfg_model'], spec['subject'], device)
    runner = Runner(model, device, bool(spec.get('amp')),
                    bool(spec.get('channels_last')))
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
    out['max_rss'] = max_rss_bytes()
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
    device = _setup_process(spec)
    amp, cl = bool(spec.get('amp')), bool(spec.get('channels_last'))
    steps = {}
    for subject in SUBJECTS:
        model = build_subject(spec['cfg_model'], subject, device)
        steps[subject] = Runner(model, device, amp, cl).infer(
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
    ratios = [a / b for a, b in zip(times['sera'], times['bare'])]
    return dict(sera_s=statistics.median(times['sera']),
                bare_s=statistics.median(times['bare']),
                ratio=statistics.median(ratios), ratios=ratios)


def spread(values: Sequence[float]) -> Dict[str, float]:
    """``dict(min, median, max)`` of ``values``."""
    return dict(min=min(values), median=statistics.median(values),
                max=max(values))


def measure_compare(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Two models (e.g. one config before and after a change) timed in
    alternation in one process, so both see the same machine speed.

    ``spec`` keys: ``cfg_models`` (``{'a': cfg, 'b': cfg}``), ``kind``
    (``'train'``: forward loss + backward + AdamW at ``train_batch``;
    ``'infer'``: inference at ``latency_batch``), ``size``, ``runs``,
    ``warmup``, ``device``, ``threads``, ``amp``, ``channels_last``
    (``b_amp`` / ``b_channels_last`` / ``b_compile``: b's own, default
    a's; ``compile`` defaults to False); with
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
    device = _setup_process(spec)
    amp, cl = bool(spec.get('amp')), bool(spec.get('channels_last'))
    comp = bool(spec.get('compile'))
    formats = dict(a=(amp, cl, comp),
                   b=(bool(spec.get('b_amp', amp)),
                      bool(spec.get('b_channels_last', cl)),
                      bool(spec.get('b_compile', comp))))
    steps = {}
    for key in ('a', 'b'):
        runner = Runner(build_subject(spec['cfg_models'][key], 'sera',
                                      device), device, *formats[key])
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
    ratios = [b / a for a, b in zip(times['a'], times['b'])]
    return dict(kind=kind, a=spread(times['a']), b=spread(times['b']),
                ratios=ratios, ratio=statistics.median(ratios), first=first)


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


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """``a / b`` or None when either is missing or ``b`` is 0."""
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) \
            or b == 0:
        return None
    return a / b


# ------------------------------------------------------- per-module profile
def profile_parts(model: nn.Module) -> Dict[str, nn.Module]:
    """The parts a training step is broken down into: the text encoder,
    the backbone's pretrained encoder (its blocks, adapters excluded), each
    adapter, the neck and the decode head (names -> modules)."""
    parts: Dict[str, nn.Module] = {}
    for name in ('text_encoder', 'backbone', 'neck', 'decode_head',
                 'no_target_head'):
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


def profile_ops(runner: 'Runner', batch: int, size: int, runs: int,
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


def format_ops(result: Dict[str, Any], name: str, setup: str,
               top_ops: int = 10) -> str:
    """Markdown of :func:`profile_ops`."""
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


def profile_train_step(runner: 'Runner', batch: int, size: int, runs: int,
                       warmup: int) -> Dict[str, Any]:
    """Per-part forward times (ms, median over ``runs``) of the training
    step, with the step's total, its forward (loss), backward and optimizer
    parts. Nested parts (the adapters inside the backbone) are included in
    their parent's time; ``backbone without adapters`` subtracts them.
    Backward is reported for the whole model only: autograd interleaves
    the parts' backward passes, so a per-part split would need the
    profiler's op-level attribution.
    """
    import statistics
    check_runs(runs, warmup)
    model = runner.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
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


def format_profile(profile: Dict[str, Any], title: str, setup: str) -> str:
    """Markdown table of :func:`profile_train_step`'s result."""
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
