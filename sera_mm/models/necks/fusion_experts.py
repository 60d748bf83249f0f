"""Geometry-preserving experts of the SERA-Fusion neck.

Each maps (B, C, h, w) to (B, C, h, w) and keeps the spatial layout (no
stride, same size out). Short names: 'identity', 'conv3x3', 'dilated3x3',
'coord', 'multiscale' (see :func:`build_fusion_experts`), and the SERA
paper's residual experts 'paper_spatial', 'paper_context', 'paper_boundary',
'paper_shape' (:mod:`.paper_fusion_experts`).
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.models.layers import (DEFAULT_NORM_CFG, ConvNormAct,
                                   build_experts, check_grid, coord_maps)
from sera_mm.registry import MODELS


@MODELS.register_module()
class PointwiseFusionExpert(nn.Module):
    """'identity': a 1x1 conv (+ norm + ReLU), no spatial mixing.

    Args:
        channels: C, input and output channels.
        norm_cfg: mmcv norm config (default GroupNorm).
    """

    def __init__(self, channels: int,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        self.channels = channels
        self.block = ConvNormAct(channels, channels, 1, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.block(x)


@MODELS.register_module()
class ConvFusionExpert(nn.Module):
    """'conv3x3' / 'dilated3x3': a (dilated) 3x3 conv + GroupNorm + ReLU.

    Args:
        channels: C, input and output channels.
        dilation: 1 for 'conv3x3'; 'dilated3x3' uses 2 by default.
        norm_cfg: mmcv norm config (default GroupNorm).
    """

    def __init__(self, channels: int, dilation: int = 1,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        if dilation < 1:
            raise ValueError(f'dilation must be >= 1, got {dilation}')
        self.channels = channels
        self.dilation = dilation
        self.block = ConvNormAct(channels, channels, 3, dilation=dilation,
                                 norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.block(x)


@MODELS.register_module()
class DilatedFusionExpert(ConvFusionExpert):
    """'dilated3x3': a 3x3 conv with dilation (default 2)."""

    def __init__(self, channels: int, dilation: int = 2,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__(channels, dilation=dilation, norm_cfg=norm_cfg)


@MODELS.register_module()
class CoordFusionExpert(nn.Module):
    """'coord': CoordConv. Concatenates normalised x/y maps to the input and
    applies a 3x3 conv (+ norm + ReLU), so the expert can localise
    ("left", "top"). ``norm_cfg``: mmcv norm config (default GroupNorm)."""

    def __init__(self, channels: int,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        self.channels = channels
        self.block = ConvNormAct(channels + 2, channels, 3,
                                 norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.block(torch.cat([x, coord_maps(x)], dim=1))


@MODELS.register_module()
class MultiScaleFusionExpert(nn.Module):
    """'multiscale': average-pool down by ``scale`` (ceil mode), 3x3 conv
    (+ norm + ReLU) at the coarse scale, bilinear upsample back to the
    input size, plus the input (residual). ``norm_cfg``: mmcv norm config
    (default GroupNorm)."""

    def __init__(self, channels: int, scale: int = 2,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f'scale must be >= 1, got {scale}')
        self.channels = channels
        self.scale = scale
        self.block = ConvNormAct(channels, channels, 3, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        size = x.shape[-2:]
        y = F.avg_pool2d(x, self.scale, self.scale, ceil_mode=True)
        y = self.block(y)
        y = F.interpolate(y, size=size, mode='bilinear', align_corners=False)
        return x + y


#: The SERA paper's fusion experts (paper_fusion_experts.py, registered
#: when the necks package is imported). They return ``X + f(X)``: mix them
#: in SERAFusion with ``residual=False``.
PAPER_FUSION_EXPERT_TYPES: Dict[str, str] = {
    'paper_spatial': 'PaperSpatialFusionExpert',
    'paper_context': 'PaperContextFusionExpert',
    'paper_boundary': 'PaperBoundaryFusionExpert',
    'paper_shape': 'PaperShapeFusionExpert',
}

FUSION_EXPERT_TYPES: Dict[str, str] = {
    'identity': 'PointwiseFusionExpert',
    'conv3x3': 'ConvFusionExpert',
    'dilated3x3': 'DilatedFusionExpert',
    'coord': 'CoordFusionExpert',
    'multiscale': 'MultiScaleFusionExpert',
    **PAPER_FUSION_EXPERT_TYPES,
}


def build_fusion_experts(names: Sequence[Union[str, dict]],
                         channels: int) -> nn.ModuleList:
    """Build neck experts from short names ('identity', 'conv3x3',
    'dilated3x3', 'coord', 'multiscale', 'paper_spatial', 'paper_context',
    'paper_boundary', 'paper_shape') or config dicts (``channels`` is
    filled in)."""
    return build_experts(names, channels, aliases=FUSION_EXPERT_TYPES)
