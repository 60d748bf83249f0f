"""Planning a benchmark: the config edits of the sweeps and the list of
measuring jobs.

A sweep (``--sweep key=v1,v2``) varies one factor of the model config:
``input_size`` (the preprocessor's pad size), ``num_experts`` (the first
experts of the adapters and the fusion neck), ``adapter_layers``
(adapters after that many evenly spaced blocks; 0 removes them) or
``batch`` (the measuring batch; the config is unchanged). Every edit
returns a copy; the input config is never modified.
"""
import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple

ADAPTER_EXPERTS = ('spatial', 'context', 'boundary', 'semantic')

FUSION_EXPERTS = ('identity', 'conv3x3', 'dilated3x3', 'coord', 'multiscale')

SWEEP_KEYS = ('input_size', 'batch', 'num_experts', 'adapter_layers')

SUBJECTS = ('sera', 'bare')

#: A measuring job: (tag, spec). Tags: ``('sera', )``, ``('bare', )``,
#: ``(sweep key, value)`` and ``('paired', )``.
Job = Tuple[Tuple, Dict[str, Any]]


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


def config_size(cfg_model: Dict[str, Any]) -> Optional[int]:
    """The square input size of a model config's data preprocessor, or
    None when it pads to no fixed size."""
    size = (cfg_model.get('data_preprocessor') or {}).get('size')
    return int(size[0]) if size else None


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


def plan_jobs(base: Dict[str, Any], cfg_model: Dict[str, Any],
              sweeps: Sequence[Tuple[str, Sequence[int]]], *,
              batch_size: int, throughput_batch: int,
              skip_train: bool = False, memory_steps: int = 0,
              flops: bool = True, paired: bool = True) -> List[Job]:
    """The jobs of a benchmark, in the order they run.

    Args:
        base: spec entries shared by every job (``device``, ``threads``,
            ``amp``, ``channels_last``, ``size``, ``runs``, ``warmup``,
            ``imports``).
        cfg_model: the model config (plain dict), at the measured size.
        sweeps: ``[(key, values)]`` as :func:`parse_sweep` returns them.
        batch_size: batch of the training step (skipped with
            ``skip_train``).
        throughput_batch: batch of the throughput measurement (0 skips).
        memory_steps: training steps of the memory record (0 skips).
        flops: count FLOPs of both subjects.
        paired: add the interleaved latency job.

    Returns:
        ``[(tag, spec)]``: both subjects (``('sera', )``, ``('bare', )``)
        with every figure; one SERA job per sweep value (``(key, value)``:
        latency at batch 1, or at the value for ``batch``, and the training
        step, no throughput, FLOPs or parameters; ``input_size`` sets the
        measured size); then ``('paired', )`` unless ``paired`` is False.
    """
    jobs: List[Job] = []
    train_batch = 0 if skip_train else batch_size
    for subject in SUBJECTS:
        jobs.append(((subject, ), dict(
            base, cfg_model=cfg_model, subject=subject, latency_batch=1,
            throughput_batch=throughput_batch, train_batch=train_batch,
            memory_steps=memory_steps, flops=flops, params=True)))
    for key, values in sweeps:
        for v in values:
            spec = dict(base, cfg_model=apply_sweep(cfg_model, key, v),
                        subject='sera', latency_batch=1, throughput_batch=0,
                        train_batch=train_batch, flops=False, params=False)
            if key == 'input_size':
                spec['size'] = v
            if key == 'batch':
                spec['latency_batch'] = v
                spec['train_batch'] = 0 if skip_train else v
            jobs.append(((key, v), spec))
    if paired:
        jobs.append((('paired', ), dict(
            base, cfg_model=cfg_model, latency_batch=1)))
    return jobs
