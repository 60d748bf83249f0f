"""Activation checkpointing where it saves something."""
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.nn import Parameter
from torch.utils.checkpoint import checkpoint


def maybe_checkpoint(enabled: bool, fn: Callable[..., Any], x: Tensor,
                     *args: Any, params: Iterable[Parameter] = (),
                     **checkpoint_kwargs: Any) -> Any:
    """``fn(x, *args)``; through non-reentrant activation checkpointing
    (its activations recomputed in the backward pass instead of stored)
    when ``enabled`` (the caller's ``with_cp`` and training mode),
    gradients are on, and they reach ``x`` or one of ``params`` (the
    parameters ``fn`` uses). ``checkpoint_kwargs`` go to
    ``torch.utils.checkpoint.checkpoint`` (e.g. ``context_fn``)."""
    if (enabled and torch.is_grad_enabled()
            and (x.requires_grad or any(p.requires_grad for p in params))):
        return checkpoint(fn, x, *args, use_reentrant=False,
                          **checkpoint_kwargs)
    return fn(x, *args)
