"""Weighted mixture of experts with sparse execution.

One function serves every routed module (SERA-Adapter, SERA-Fusion and the
paper-faithful variants): it evaluates ``sum_e w_e * expert_e(x)``.
"""
from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor


def mix_experts(experts: Sequence[nn.Module], x: Tensor,
                weights: Tensor) -> Tensor:
    """Mix expert outputs with routing weights.

    Global weights (B, E) that hold exact zeros (top-k routing) run every
    expert only on the samples routed to it (``weights[:, e] != 0``) and
    scatter the weighted outputs back, so top-1 routing costs about one
    expert per sample. Dense global weights and per-location weights
    (B, E, h, w) run every expert on the whole batch.

    Experts must map ``x`` (B, ...) to outputs of one common shape
    (B, ...) and treat samples independently (BatchNorm in training mode
    sees only the routed samples). With gradients enabled, an expert that no
    sample was routed to still receives a (zero) gradient, so distributed
    training with ``find_unused_parameters=False`` works.

    Args:
        experts: E modules.
        x: expert input, (B, C, h, w) (any shape with batch first).
        weights: (B, E) or (B, E, h, w).

    Returns:
        Tensor: the mixture, shape of one expert's output.
    """
    num = len(experts)
    if weights.dim() not in (2, 4) or weights.shape[1] != num or (
            weights.shape[0] != x.shape[0]):
        raise ValueError(
            f'weights must have shape (B={x.shape[0]}, E={num}) or '
            f'(B, E, h, w), got {tuple(weights.shape)}')
    if weights.dim() == 4:
        out = None
        for e, expert in enumerate(experts):
            y = expert(x) * weights[:, e:e + 1]
            out = y if out is None else out + y
        return out
    active = weights != 0  # (B, E)
    if bool(active.all()):
        out = None
        for e, expert in enumerate(experts):
            w = weights[:, e].reshape((-1, ) + (1, ) * (x.dim() - 1))
            y = expert(x) * w
            out = y if out is None else out + y
        return out
    parts = []
    idle = []
    for e, expert in enumerate(experts):
        idx = active[:, e].nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            idle.append(expert)
            continue
        y = expert(x.index_select(0, idx))
        w = weights.index_select(0, idx)[:, e]
        y = y * w.reshape((-1, ) + (1, ) * (y.dim() - 1))
        parts.append((idx, y))
    out = None
    if parts:
        # experts may return different dtypes under autocast (one runs a
        # float32-only op, another a float16 matmul): the products with the
        # weights are promoted as in the dense sum, and scattered into the
        # dtype they promote to together
        dtype = parts[0][1].dtype
        for _, y in parts[1:]:
            dtype = torch.promote_types(dtype, y.dtype)
        out = parts[0][1].new_zeros((x.shape[0], ) +
                                    tuple(parts[0][1].shape[1:]),
                                    dtype=dtype)
        for idx, y in parts:
            out = out.index_add(0, idx, y.to(dtype))
    if out is None:  # every weight is zero: no expert ran
        raise ValueError('mix_experts: every routing weight is zero')
    if idle and torch.is_grad_enabled():
        # Experts no sample was routed to stay in the autograd graph with a
        # zero gradient, so DDP's static graph (find_unused_parameters=
        # False) sees every trainable parameter in every iteration.
        zero = sum(p.sum() for m in idle for p in m.parameters()
                   if p.requires_grad)
        if isinstance(zero, Tensor):
            out = out + zero.to(out.dtype) * 0.0
    return out


__all__ = ['mix_experts']
