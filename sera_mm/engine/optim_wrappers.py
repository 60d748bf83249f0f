"""Optimizer wrappers and their constructor.

Mixed precision on CPU: mmengine's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU
is present. On CPU, autocast supports bfloat16 only; bf16 has fp32's
exponent range, so no loss scaling is needed and the wrapper is a plain
``OptimWrapper`` whose ``optim_context`` enables
``torch.autocast('cpu', dtype=torch.bfloat16)``.

A quieter console: mmengine's ``DefaultOptimWrapperConstructor`` logs one
line per parameter (``paramwise_options -- <name>:lr=...`` for every option
of every trainable parameter, ``<name> is skipped since its
requires_grad=False`` for every frozen one), several hundred lines for a
model with frozen encoders. :class:`SummaryOptimWrapperConstructor` (what
``tools/train.py`` uses unless the config names a constructor) keeps those
records out of the console, leaves them in the log file, and logs one
summary line instead.

Fewer parameter groups: with a ``paramwise_cfg`` mmengine's constructor
gives every trainable tensor a parameter group of its own (360 groups for
the synthetic main job's norms, biases, adapters, neck and head). The
optimizer then runs its update once per group, so the multi-tensor
(``foreach``) and ``fused`` kernels see one tensor at a time.
:class:`SummaryOptimWrapperConstructor` merges groups whose options are all
equal (:func:`merge_param_groups`): every tensor keeps its learning rate,
weight decay and other options, and each update computes the same values;
only the number of groups changes.
"""
import logging
import re
from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from sera_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS

#: Messages of mmengine's constructor that concern a single parameter.
PER_PARAMETER_PATTERNS = (
    re.compile(r'^paramwise_options -- \S+:\w+='),
    re.compile(r'^\S+ is skipped since its requires_grad=False$'),
    re.compile(r'^\S* is duplicate\. It is skipped since bypass_duplicate='),
)


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` with bfloat16 autocast on CPU (``tools/train.py
    --amp`` without CUDA).

    Args:
        dtype: must be 'bfloat16' (CPU autocast supports nothing else).
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError('CPU autocast supports only bfloat16, got '
                             f'dtype={dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield


class PerParameterRecordFilter(logging.Filter):
    """Drop the optimizer constructor's per-parameter records
    (:data:`PER_PARAMETER_PATTERNS`); ``dropped`` counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    @staticmethod
    def is_per_parameter(record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: keep it
            return False
        return any(p.match(message) for p in PER_PARAMETER_PATTERNS)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.is_per_parameter(record):
            self.dropped += 1
            return False
        return True


def console_handlers(logger: logging.Logger) -> List[logging.Handler]:
    """The stream handlers of ``logger`` that are not file handlers (an
    MMLogger's console handler)."""
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler)
            and not isinstance(h, logging.FileHandler)]


@contextmanager
def per_parameter_records_off_console(
        logger: logging.Logger) -> Iterator[PerParameterRecordFilter]:
    """Within the block, the console handlers of ``logger`` drop the
    per-parameter records; file handlers still write them."""
    record_filter = PerParameterRecordFilter()
    handlers = console_handlers(logger)
    for handler in handlers:
        handler.addFilter(record_filter)
    try:
        yield record_filter
    finally:
        for handler in handlers:
            handler.removeFilter(record_filter)


def _fmt(value) -> str:
    return f'{value:g}' if isinstance(value, (int, float)) else str(value)


def param_group_summary(model: nn.Module,
                        optimizer: torch.optim.Optimizer) -> str:
    """One line: trainable tensors (and values) per lr / weight-decay
    group, frozen tensors skipped (or, without ``paramwise_cfg``, handed to
    the optimizer but never updated), tensors with ``lr_mult`` and with
    ``decay_mult`` (what the per-parameter records said one by one)."""
    groups: Counter = Counter()
    lr_mult = decay_mult = trainable = values = frozen_in = 0
    in_optimizer = set()
    for group in optimizer.param_groups:
        params = [p for p in group['params'] if p.requires_grad]
        in_optimizer.update(id(p) for p in group['params'])
        frozen_in += len(group['params']) - len(params)
        if not params:
            continue
        n = len(params)
        trainable += n
        values += sum(p.numel() for p in params)
        key = f"lr={_fmt(group.get('lr'))} " \
            f"wd={_fmt(group.get('weight_decay', 0))}"
        groups[key] += n
        lr_mult += n if 'lr_mult' in group else 0
        decay_mult += n if 'decay_mult' in group else 0
    skipped = sum(1 for p in model.parameters()
                  if not p.requires_grad and id(p) not in in_optimizer)
    by_group = '; '.join(f'{k}: {v}' for k, v in groups.items())
    line = (f'optimizer {type(optimizer).__name__}: {trainable} trainable '
            f'parameter tensors ({values / 1e6:.3f} M values) in '
            f'{len(groups)} lr/weight-decay groups ({by_group}); {skipped} '
            f'frozen tensors skipped (requires_grad=False)')
    if frozen_in:
        line += f', {frozen_in} frozen tensors in the optimizer (not updated)'
    line += (f'; custom_keys with lr_mult: {lr_mult}, with decay_mult: '
             f'{decay_mult}')
    return line


def _group_options_key(group: Dict[str, Any]) -> Tuple:
    return tuple((k, repr(v)) for k, v in sorted(group.items())
                 if k != 'params')


def _in_torch_optim(optimizer: torch.optim.Optimizer) -> bool:
    """Whether groups may be merged: only ``torch.optim`` optimizers;
    wrappers that partition or cache groups at construction (e.g.
    ``ZeroRedundancyOptimizer``) keep inner groups matched by index."""
    return type(optimizer).__module__.startswith('torch.optim')


def _refuse_state_with_groups(optimizer: torch.optim.Optimizer, count: int,
                              message: str) -> None:
    """Register a load pre-hook on ``optimizer`` that raises
    ``ValueError(message)`` for a state dict with ``count`` parameter
    groups, before anything is loaded."""

    def refuse(opt, state_dict):
        if len(state_dict.get('param_groups', [])) == count:
            raise ValueError(message)
        return None

    optimizer.register_load_state_dict_pre_hook(refuse)


def merge_param_groups(optimizer: torch.optim.Optimizer) -> int:
    """Merge the parameter groups of a freshly built ``optimizer`` whose
    options (every key but ``params``) are equal, in place, and return the
    number of groups before.

    A merged group holds its members' tensors in their original order and
    sits where its first member was. The optimizer must not have stepped
    yet (its state must be empty). Only optimizers of ``torch.optim`` are
    merged; others (wrappers such as ``ZeroRedundancyOptimizer`` that keep
    their own groups) are left as they are.

    Loading a state dict saved with the groups unmerged (one per tensor,
    before this was done) raises a ``ValueError`` that says how to resume
    such a run: with ``optim_wrapper.merge_param_groups=False``.
    """
    if optimizer.state:
        raise ValueError('merge_param_groups needs an optimizer that has not '
                         'stepped yet (its state is not empty)')
    if not _in_torch_optim(optimizer):
        return len(optimizer.param_groups)
    before = len(optimizer.param_groups)
    merged: List[Dict[str, Any]] = []
    where: Dict[Tuple, int] = {}
    for group in optimizer.param_groups:
        key = _group_options_key(group)
        if key in where:
            merged[where[key]]['params'].extend(group['params'])
        else:
            where[key] = len(merged)
            merged.append(dict(group, params=list(group['params'])))
    if len(merged) == before:
        return before
    optimizer.param_groups[:] = merged
    after = len(merged)

    _refuse_state_with_groups(
        optimizer, before,
        f'the optimizer state to load has {before} parameter groups (saved '
        f'before groups with equal options were merged); this optimizer has '
        f'{after}. Resume that run with --cfg-options '
        f'optim_wrapper.merge_param_groups=False')
    return before


def refuse_merged_state(optimizer: torch.optim.Optimizer) -> None:
    """Make ``optimizer`` (groups left unmerged) refuse, with a hint, a
    state dict saved with its groups merged: loading one raises a
    ``ValueError`` that says to resume with
    ``optim_wrapper.merge_param_groups=True`` (the default), instead of
    torch's bare group-count error. Optimizers that
    :func:`merge_param_groups` leaves alone are left alone here too."""
    if not _in_torch_optim(optimizer):
        return
    groups = len(optimizer.param_groups)
    merged = len({_group_options_key(g) for g in optimizer.param_groups})
    if merged == groups:
        return
    _refuse_state_with_groups(
        optimizer, merged,
        f'the optimizer state to load has {merged} parameter groups (saved '
        f'with groups of equal options merged); this optimizer has {groups} '
        f'(optim_wrapper.merge_param_groups=False). Resume that run with the '
        f'default, --cfg-options optim_wrapper.merge_param_groups=True')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SummaryOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, with its per-parameter log records
    kept off the console (still in the log file), parameter groups with
    equal options merged (:func:`merge_param_groups`) and one INFO summary
    line (:func:`param_group_summary`) after the optimizer is built.

    Select it with ``optim_wrapper=dict(constructor=
    'SummaryOptimWrapperConstructor', ...)``; ``tools/train.py`` does so
    when the config names no constructor. ``optim_wrapper.
    merge_param_groups=False`` keeps mmengine's groups (one per tensor with
    a ``paramwise_cfg``), as a run started before the merge needs when it
    resumes.

    Args:
        optim_wrapper_cfg: the ``optim_wrapper`` config, optionally with
            ``merge_param_groups`` (bool, default True).
        paramwise_cfg: mmengine's ``paramwise_cfg``.
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        optim_wrapper_cfg = dict(optim_wrapper_cfg)
        merge = optim_wrapper_cfg.pop('merge_param_groups', True)
        if not isinstance(merge, bool):
            raise TypeError('optim_wrapper.merge_param_groups must be True or'
                            f' False, got {merge!r}')
        self.merge_param_groups = merge
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        logger = MMLogger.get_current_instance()
        with per_parameter_records_off_console(logger) as record_filter:
            wrapper = super().__call__(model)
        module = model.module if hasattr(model, 'module') else model
        optimizer = getattr(wrapper, 'optimizer', None)
        if isinstance(optimizer, torch.optim.Optimizer):
            before = None
            if self.merge_param_groups:
                before = merge_param_groups(optimizer)
            else:
                refuse_merged_state(optimizer)
            line = param_group_summary(module, optimizer)
            if before is not None and before != len(optimizer.param_groups):
                line += (f'; {before} parameter groups merged into '
                         f'{len(optimizer.param_groups)} (equal options)')
            if record_filter.dropped:
                to_file = any(isinstance(h, logging.FileHandler)
                              for h in logger.handlers)
                line += (f' ({record_filter.dropped} per-parameter lines '
                         + ('in the log file only)' if to_file else
                            'not shown on the console)'))
            print_log(line, logger='current')
        return wrapper


def use_summary_constructor(cfg) -> bool:
    """Make ``cfg.optim_wrapper`` use :class:`SummaryOptimWrapperConstructor`
    when it names no constructor (a config with several optimizers, as a
    dict of wrappers, is left alone). Returns whether it was set."""
    optim = cfg.get('optim_wrapper') if hasattr(cfg, 'get') else None
    if not isinstance(optim, dict) or 'constructor' in optim or \
            'optimizer' not in optim:
        return False
    optim['constructor'] = 'SummaryOptimWrapperConstructor'
    return True


__all__: List[str] = [
    'CPUAmpOptimWrapper', 'SummaryOptimWrapperConstructor',
    'merge_param_groups', 'PerParameterRecordFilter', 'refuse_merged_state',
    'per_parameter_records_off_console', 'param_group_summary',
    'use_summary_constructor'
]
