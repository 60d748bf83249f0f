"""The SERA paper's four SERA-Fusion experts (arXiv 2603.12538).

Each maps the fusion-stage map X (B, C, h, w) to (B, C, h, w), is residual
(``X + f(X)``) and is an exact identity at initialisation (the layer that
produces ``f`` starts at zero). Because they are residual, SERAFusion mixes
them with ``residual=False``: with weights summing to 1 the level output is
``X + sum_e w_e f_e(X)``, the paper's formula.

Short names for :func:`~sera_mm.models.necks.fusion_experts.
build_fusion_experts`: 'paper_spatial', 'paper_context', 'paper_boundary',
'paper_shape'.

The fixed filters (Sobel, Laplacian, binomial blur) are non-trainable,
non-persistent float32 buffers, cast to the input's dtype when applied, and
use replicate padding, so a constant map has zero edge / Laplacian response
and an unchanged blur everywhere, borders included.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.models.layers.grid import (activation, check_grid, coord_maps,
                                        edge_kernels, replicate_pad1)
from sera_mm.registry import MODELS


def _zero_conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _binomial_kernel() -> Tensor:
    """3x3 binomial blur ([1, 2, 1] outer [1, 2, 1]) / 16, shape (3, 3)."""
    row = torch.tensor([1., 2., 1.])
    return torch.outer(row, row) / 16.0


def _depthwise_filters(kernels: Tensor, channels: int) -> Tensor:
    """K fixed 3x3 kernels (K, 3, 3) -> depthwise weight (K*C, 1, 3, 3);
    channel c uses rows K*c .. K*c + K-1 (F.conv2d with groups=C)."""
    return kernels.unsqueeze(1).repeat(channels, 1, 1, 1)


def _apply_filters(x: Tensor, weight: Tensor, channels: int,
                   num_kernels: int) -> Tensor:
    """Fixed depthwise filters with replicate padding.

    Returns (B, K, C, h, w): response of kernel k on channel c at [:, k, c].
    """
    b, _, h, w = x.shape
    padded = replicate_pad1(x)
    out = F.conv2d(padded, weight.to(x.dtype), groups=channels)
    return out.reshape(b, channels, num_kernels, h, w).transpose(1, 2)


@MODELS.register_module()
class PaperSpatialFusionExpert(nn.Module):
    """'paper_spatial': ``X + a * Conv1x1(coords)``.

    ``coords`` are the normalised x/y maps of the grid
    (:func:`~sera_mm.models.layers.coord_maps`, in [-1, 1]);
    ``a`` is a learnable scalar initialised to 0, so the expert starts as
    the identity (the 1x1 conv then gets its first gradient once ``a`` has
    left 0).

    Args:
        channels: C, input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.proj = nn.Conv2d(2, channels, 1)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return x + self.gain * self.proj(coord_maps(x))


@MODELS.register_module()
class PaperContextFusionExpert(nn.Module):
    """'paper_context': a pre-norm transformer layer over the grid cells.

    ::

        t = flatten(X)                                  # (B, hw, C)
        t = t + MHSA(LN(t))
        t = t + FFN(LN(t))      # Linear(C, r*C) -> GELU -> Linear(r*C, C)
        out = t as a grid                               # (B, C, h, w)

    The attention's output projection and the FFN's last linear layer
    (weights and biases) are zero-initialised, so the expert starts as the
    identity. ``mlp_ratio`` r is our choice (the paper does not give it).

    Args:
        channels: C, input and output channels (divisible by num_heads).
        num_heads: attention heads.
        mlp_ratio: FFN hidden width multiplier.
        dropout: dropout in the attention and after the FFN activation.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 mlp_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads != 0:
            raise ValueError(f'channels ({channels}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.channels = channels
        self.num_heads = num_heads
        hidden = max(1, int(round(channels * mlp_ratio)))
        self.norm1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(
            channels, num_heads, dropout=dropout, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        self.norm2 = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, hw, C)
        y = self.norm1(t)
        t = t + self.attn(y, y, y, need_weights=False)[0]
        t = t + self.fc2(self.drop(self.act(self.fc1(self.norm2(t)))))
        return t.transpose(1, 2).reshape(b, c, h, w)


@MODELS.register_module()
class PaperBoundaryFusionExpert(nn.Module):
    """'paper_boundary': ``X + phi(Conv1x1([X, |grad|, Gx + Gy]))``.

    Gx, Gy: fixed Sobel-x / Sobel-y filters applied to every channel
    (depthwise); ``|grad| = sqrt(Gx^2 + Gy^2 + eps)`` (computed in float32,
    so squares of large responses do not overflow in half precision). The
    1x1 conv (3C -> C) is zero-initialised and phi(0) = 0, so the expert
    starts as the identity.

    Args:
        channels: C, input and output channels.
        eps: added under the square root (keeps its gradient finite).
        act: ``torch.nn`` class name of phi (GELU).
    """

    def __init__(self,
                 channels: int,
                 eps: float = 1e-6,
                 act: str = 'GELU') -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f'eps must be > 0, got {eps}')
        self.channels = channels
        self.eps = float(eps)
        sobel = edge_kernels()[:2]  # (2, 3, 3): Sobel-x, Sobel-y
        self.register_buffer('sobel_weight',
                             _depthwise_filters(sobel, channels),
                             persistent=False)
        self.mix = _zero_conv1x1(3 * channels, channels)
        self.act = activation(act)

    def gradients(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Sobel responses (Gx, Gy), each (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        resp = _apply_filters(x, self.sobel_weight, self.channels, 2)
        return resp[:, 0], resp[:, 1]

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        gx, gy = self.gradients(x)
        mag = torch.sqrt(gx.float().square() + gy.float().square() +
                         self.eps).to(gx.dtype)
        feats = torch.cat([x, mag, gx + gy], dim=1)  # (B, 3C, h, w)
        return x + self.act(self.mix(feats))


@MODELS.register_module()
class PaperShapeFusionExpert(nn.Module):
    """'paper_shape': ``X + phi(Conv1x1([blur(X), laplacian(X)]))``.

    blur: fixed 3x3 binomial kernel ([1, 2, 1] outer [1, 2, 1] / 16);
    laplacian: fixed [[0, 1, 0], [1, -4, 1], [0, 1, 0]]; both applied to
    every channel (depthwise). The 1x1 conv (2C -> C) is zero-initialised
    and phi(0) = 0, so the expert starts as the identity.

    Args:
        channels: C, input and output channels.
        act: ``torch.nn`` class name of phi (GELU).
    """

    def __init__(self, channels: int, act: str = 'GELU') -> None:
        super().__init__()
        self.channels = channels
        kernels = torch.stack([_binomial_kernel(), edge_kernels()[2]])
        self.register_buffer('shape_weight',
                             _depthwise_filters(kernels, channels),
                             persistent=False)
        self.mix = _zero_conv1x1(2 * channels, channels)
        self.act = activation(act)

    def filter_responses(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(blur(X), laplacian(X)), each (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        resp = _apply_filters(x, self.shape_weight, self.channels, 2)
        return resp[:, 0], resp[:, 1]

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        blur, lap = self.filter_responses(x)
        return x + self.act(self.mix(torch.cat([blur, lap], dim=1)))


__all__ = [
    'PaperSpatialFusionExpert', 'PaperContextFusionExpert',
    'PaperBoundaryFusionExpert', 'PaperShapeFusionExpert'
]
