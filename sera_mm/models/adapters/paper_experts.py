"""Grid experts of the SERA paper's own adapter (arXiv 2603.12538).

The paper's SERA-Adapter refines the patch grid G (B, d, h, w) in two ways:
a multi-scale enrichment G_rich that is always applied, and two routed
experts, spatial S and boundary B, added with routing weights::

    G_rich = MultiScale(G)                               # always on
    S      = phi(DWConv3x3(G)) + beta * G                # beta = 0.3
    B      = ReLU(BN(G + alpha * DWConv3x3(G)))          # alpha = 0.1
    G_corr = G_rich + 0.25 * w_s * S + 0.15 * w_b * B    # SERAPaperAdapter

Every module here maps (B, d, h, w) to the same shape. Short names for
:func:`~sera_mm.models.adapters.experts.build_experts`: 'paper_spatial',
'paper_boundary', 'paper_multiscale'.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from torch import Tensor

from sera_mm.registry import MODELS
from sera_mm.models.layers.grid import activation, check_grid


def _depthwise(channels: int, kernel_size: int, bias: bool) -> nn.Conv2d:
    """Depthwise kxk conv with 'same' padding."""
    return nn.Conv2d(channels, channels, kernel_size,
                     padding=kernel_size // 2, groups=channels, bias=bias)


@MODELS.register_module()
class PaperMultiScaleBranches(nn.Module):
    """G_rich: the paper's multi-scale enrichment of the grid.

    Three branches on G, a pointwise 1x1 conv, a depthwise 3x3 and a
    depthwise 5x5 conv, combined as (our reading of the paper, which names
    the branches but not how they are merged)::

        G_rich = G + fuse(concat[b1(G), b3(G), b5(G)])   # fuse: 1x1, 3d -> d

    The merge is linear (no activation): the adapter applies GELU after the
    word cross-attention. ``fuse`` (weight and bias) is zero-initialised, so
    ``G_rich == G`` bit-exactly at initialisation; as a consequence the
    three branches receive no gradient until ``fuse`` has left zero (after
    the first optimiser step), while ``fuse`` itself does.

    Args:
        channels: d, input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.branch1 = nn.Conv2d(channels, channels, 1)
        self.branch3 = _depthwise(channels, 3, bias=True)
        self.branch5 = _depthwise(channels, 5, bias=True)
        self.fuse = nn.Conv2d(3 * channels, channels, 1)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, d, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        branches = torch.cat(
            [self.branch1(x), self.branch3(x), self.branch5(x)], dim=1)
        return x + self.fuse(branches)


@MODELS.register_module()
class PaperAdapterSpatialExpert(nn.Module):
    """The paper's spatial expert: ``S = phi(DWConv3x3(G)) + beta * G``.

    Args:
        channels: d, input and output channels.
        beta: weight of the identity path (the paper's 0.3).
        act: ``torch.nn`` class name of phi (the paper's GELU).
    """

    def __init__(self,
                 channels: int,
                 beta: float = 0.3,
                 act: str = 'GELU') -> None:
        super().__init__()
        self.channels = channels
        self.beta = float(beta)
        self.depthwise = _depthwise(channels, 3, bias=True)
        self.act = activation(act)

    def extra_repr(self) -> str:
        return f'channels={self.channels}, beta={self.beta:g}'

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, d, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.act(self.depthwise(x)) + self.beta * x


@MODELS.register_module()
class PaperAdapterBoundaryExpert(nn.Module):
    """The paper's boundary expert: ``B = ReLU(BN(G + alpha * DWConv3x3(G)))``.

    The depthwise conv has no bias: a per-channel constant before BatchNorm
    is removed by its mean (training) or absorbed by its shift (eval).
    BatchNorm makes the expert depend on the batch in training mode; with
    top-k routing :func:`~sera_mm.models.routers.mixture.mix_experts` runs
    it on the routed samples only, so its statistics come from those.

    Under DDP, BatchNorm keeps one set of running statistics per rank
    (mmengine does not broadcast buffers by default): pass
    ``norm_cfg=dict(type='SyncBN')``, or set ``sync_bn='torch'`` in the
    config so that mmengine's runner converts every BatchNorm of the model
    to SyncBatchNorm when it wraps it for distributed training.

    Args:
        channels: d, input and output channels.
        alpha: weight of the depthwise path (the paper's 0.1).
        norm_cfg: mmcv norm config of BN (default ``dict(type='BN')``;
            ``'SyncBN'`` for synchronised statistics, ``'GN'`` for none).
    """

    def __init__(self,
                 channels: int,
                 alpha: float = 0.1,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.channels = channels
        self.alpha = float(alpha)
        self.depthwise = _depthwise(channels, 3, bias=False)
        self.norm = build_norm_layer(dict(norm_cfg or dict(type='BN')),
                                     channels)[1]
        self.act = nn.ReLU()

    def extra_repr(self) -> str:
        return f'channels={self.channels}, alpha={self.alpha:g}'

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, d, h, w)."""
        check_grid(x, self.channels, type(self).__name__)
        return self.act(self.norm(x + self.alpha * self.depthwise(x)))


__all__ = [
    'PaperMultiScaleBranches', 'PaperAdapterSpatialExpert',
    'PaperAdapterBoundaryExpert'
]
