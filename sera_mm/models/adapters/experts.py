"""Grid experts of the SERA-Adapter.

Every expert maps a grid (B, d, h, w) to the same shape; the adapter's router
mixes their outputs. Short names for configs: 'spatial', 'context',
'boundary', 'semantic' (see :func:`build_experts`), and the SERA paper's
experts 'paper_spatial', 'paper_boundary', 'paper_multiscale'
(:mod:`.paper_experts`).
"""
from typing import Dict, List, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.registry import MODELS


def _check_grid(x: Tensor, channels: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'{name} expects input of shape (B, {channels}, h, '
                         f'w), got {tuple(x.shape)}')


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
        _check_grid(x, self.channels, type(self).__name__)
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
        _check_grid(x, self.channels, type(self).__name__)
        return self.pointwise(self.act(self.depthwise(x)))


def replicate_pad1(x: Tensor) -> Tensor:
    """Replicate-pad the last two dims by one: (B, C, h, w) -> (B, C, h+2,
    w+2).

    Eager mode uses ``F.pad(mode='replicate')``. Under ``torch.compile`` the
    same values come from concatenating the edge rows and columns, because
    inductor (torch 2.x on CPU) picks a wrong output layout for
    ``replication_pad2d_backward`` on non-contiguous grids and the compiled
    backward fails; the forward values are identical either way.
    """
    if not torch.compiler.is_compiling():
        return F.pad(x, (1, 1, 1, 1), mode='replicate')
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)


def _edge_kernels() -> Tensor:
    """Sobel-x, Sobel-y and Laplacian 3x3 kernels, shape (3, 3, 3)."""
    sobel_x = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
    sobel_y = sobel_x.t().contiguous()
    laplacian = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
    return torch.stack([sobel_x, sobel_y, laplacian])


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
        kernels = _edge_kernels()  # (3, 3, 3)
        # Depthwise weight (3d, 1, 3, 3): channel c uses rows 3c..3c+2.
        weight = kernels.unsqueeze(1).repeat(channels, 1, 1, 1)
        self.register_buffer('edge_weight', weight, persistent=False)
        self.mix = nn.Conv2d(3 * channels, channels, 1)

    def edge_responses(self, x: Tensor) -> Tensor:
        """Fixed filter responses, (B, d, h, w) -> (B, 3d, h, w), ordered
        [sobel_x(c0), sobel_y(c0), laplacian(c0), sobel_x(c1), ...]."""
        _check_grid(x, self.channels, type(self).__name__)
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
        _check_grid(x, self.channels, type(self).__name__)
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


def expert_name(spec: Union[str, dict]) -> str:
    """Display name of an expert spec: the short name, or the cfg's
    ``name`` key, or its type."""
    if isinstance(spec, str):
        return spec
    return str(spec.get('name', spec['type']))


def build_experts(names: Sequence[Union[str, dict]],
                  channels: int,
                  aliases: Dict[str, str] = EXPERT_TYPES) -> nn.ModuleList:
    """Build a list of grid experts.

    Args:
        names: short names ('spatial', 'context', 'boundary', 'semantic'
            by default) or config dicts (``type`` plus extra kwargs, an
            optional ``name`` used for display; ``channels`` is filled in).
        channels: d, the experts' input and output channels.
        aliases: short name -> registered type.

    Returns:
        nn.ModuleList: the experts, in the given order.
    """
    if isinstance(names, (str, dict)):
        raise ValueError('names must be a sequence of expert names or '
                         f'configs, got a single {type(names).__name__}')
    if len(names) == 0:
        raise ValueError('names must hold at least one expert, got none')
    experts: List[nn.Module] = []
    for spec in names:
        if isinstance(spec, str):
            if spec not in aliases:
                raise ValueError(f'unknown expert {spec!r}; expected one of '
                                 f'{sorted(aliases)} or a config dict')
            cfg = dict(type=aliases[spec])
        elif isinstance(spec, dict) and 'type' in spec:
            cfg = {k: v for k, v in spec.items() if k != 'name'}
            cfg['type'] = aliases.get(cfg['type'], cfg['type'])
        else:
            raise ValueError(f'an expert must be a short name or a config '
                             f'dict with a type, got {spec!r}')
        cfg['channels'] = channels
        experts.append(MODELS.build(cfg))
    return nn.ModuleList(experts)
