"""Grid experts of the SERA-Adapter.

Every expert maps a grid (B, d, h, w) to the same shape; the adapter's router
mixes their outputs. Short names for configs: 'spatial', 'context',
'boundary', 'semantic' (see :func:`build_experts`), and the SERA paper's
experts 'paper_spatial', 'paper_boundary', 'paper_multiscale'
(:mod:`.paper_experts`).
"""
from typing import Dict, Sequence, Union

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.models.layers.grid import build_experts as build_grid_experts
from sera_mm.models.layers.grid import (  # noqa: F401 (re-exported)
    check_grid, edge_kernels, expert_name, replicate_pad1)
from sera_mm.registry import MODELS


@MODELS.register_module()
class SpatialExpert(nn.Module):
    """Local coherence: depthwise kxk conv -> GELU -> pointwise conv.

    Args:
        channels: d, input and output channels.
        kernel_size: depthwise kernel size (odd).
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(
                f'kernel_size must be odd, got {kernel_size}')
        self.channels = channels
        self.depthwise = nn.Conv2d(channels, channels, kernel_size,
                                   padding=kernel_size // 2, groups=channels)
        self.act = nn.GELU()
        self.pointwise = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, d, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.pointwise(self.act(self.depthwise(x)))


@MODELS.register_module()
class ContextExpert(nn.Module):
    """Wide context: dilated depthwise 3x3 conv -> GELU -> pointwise conv.

    The receptive field of one layer is ``2 * dilation + 1`` cells.

    Args:
        channels: d, input and output channels.
        dilation: dilation of the depthwise 3x3 conv.
    """

    def __init__(self, channels: int, dilation: int = 3) -> None:
        super().__init__()
        if dilation < 1:
            raise ValueError(f'dilation must be >= 1, got {dilation}')
        self.channels = channels
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=dilation,
                                   dilation=dilation, groups=channels)
        self.act = nn.GELU()
        self.pointwise = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, d, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.pointwise(self.act(self.depthwise(x)))


@MODELS.register_module()
class BoundaryExpert(nn.Module):
    """Sharp contours: fixed edge filters per channel, then a learned mix.

    Sobel-x, Sobel-y and Laplacian filters (non-trainable buffers) are applied
    depthwise to every channel with replicate padding (so a constant map has
    zero response everywhere, borders included), giving 3d response maps;
    a learned 1x1 conv mixes them back to d channels.

    Args:
        channels: d, input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        kernels = edge_kernels()  # (3, 3, 3)
        # Depthwise weight (3d, 1, 3, 3): channel c uses rows 3c..3c+2.
        weight = kernels.unsqueeze(1).repeat(channels, 1, 1, 1)
        self.register_buffer('edge_weight', weight, persistent=False)
        self.mix = nn.Conv2d(3 * channels, channels, 1)

    def edge_responses(self, x: Tensor) -> Tensor:
        """Fixed filter responses, (B, d, h, w) -> (B, 3d, h, w), ordered
        [sobel_x(c0), sobel_y(c0), laplacian(c0), sobel_x(c1), ...]."""
        check_grid(x, self.channels, type(self).__name__)
        padded = replicate_pad1(x)
        return F.conv2d(padded, self.edge_weight.to(x.dtype),
                        groups=self.channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, d, h, w)."""
        return self.mix(self.edge_responses(x))


@MODELS.register_module()
class SemanticExpert(nn.Module):
    """Per-location semantics: pointwise MLP (1x1 conv -> GELU -> 1x1 conv).

    Args:
        channels: d, input and output channels.
        mlp_ratio: hidden width multiplier.
    """

    def __init__(self, channels: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.channels = channels
        hidden = max(1, int(round(channels * mlp_ratio)))
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, d, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.fc2(self.act(self.fc1(x)))


EXPERT_TYPES: Dict[str, str] = {
    'spatial': 'SpatialExpert',
    'context': 'ContextExpert',
    'boundary': 'BoundaryExpert',
    'semantic': 'SemanticExpert',
    # the SERA paper's adapter experts (paper_experts.py; registered when
    # the adapters package is imported)
    'paper_spatial': 'PaperAdapterSpatialExpert',
    'paper_boundary': 'PaperAdapterBoundaryExpert',
    'paper_multiscale': 'PaperMultiScaleBranches',
}


def build_experts(names: Sequence[Union[str, dict]],
                  channels: int,
                  aliases: Dict[str, str] = EXPERT_TYPES) -> nn.ModuleList:
    """The adapter's experts from short names ('spatial', 'context',
    'boundary', 'semantic', 'paper_*') or configs; see
    :func:`sera_mm.models.layers.grid.build_experts`."""
    return build_grid_experts(names, channels, aliases)
