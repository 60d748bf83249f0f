"""Building blocks shared by the grid experts of adapters and necks:
input checks, fixed filters, padding, coordinate maps, activations by name
and the expert builder."""
from typing import Dict, List, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.registry import MODELS


def check_grid(x: Tensor, channels: int, name: str) -> None:
    """Raise ValueError unless ``x`` is a (B, ``channels``, h, w) grid."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'{name} expects input of shape (B, {channels}, h, '
                         f'w), got {tuple(x.shape)}')


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


def edge_kernels() -> Tensor:
    """Sobel-x, Sobel-y and Laplacian 3x3 kernels, shape (3, 3, 3)."""
    sobel_x = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
    sobel_y = sobel_x.t().contiguous()
    laplacian = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
    return torch.stack([sobel_x, sobel_y, laplacian])


def group_count(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of ``channels`` not above ``max_groups`` (GroupNorm
    groups)."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def activation(name: str) -> nn.Module:
    """An activation module from its ``torch.nn`` class name ('GELU')."""
    cls = getattr(nn, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f'act must name a torch.nn activation module such '
                         f"as 'GELU' or 'ReLU', got {name!r}")
    return cls()


def coord_maps(x: Tensor) -> Tensor:
    """Normalised coordinate maps for a grid, (B, 2, h, w): x then y, each
    in [-1, 1] (cell centres, as ``align_corners=False``)."""
    b, _, h, w = x.shape
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([xx, yy]).unsqueeze(0).expand(b, -1, -1, -1)


def expert_name(spec: Union[str, dict]) -> str:
    """Display name of an expert spec: the short name, or the cfg's
    ``name`` key, or its type."""
    if isinstance(spec, str):
        return spec
    return str(spec.get('name', spec['type']))


def build_experts(names: Sequence[Union[str, dict]],
                  channels: int,
                  aliases: Dict[str, str]) -> nn.ModuleList:
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


__all__ = [
    'check_grid', 'replicate_pad1', 'edge_kernels', 'group_count',
    'activation', 'coord_maps', 'expert_name', 'build_experts'
]
