"""Layers and helpers that several model parts use (the parts import these
and :mod:`sera_mm.structures`, never each other): word cross-attention,
grid checks, fixed filters, padding, coordinate maps, GroupNorm group
counts, activations by name and the expert builder."""
from .cross_attention import WordCrossAttention
from .grid import (activation, build_experts, check_grid, coord_maps,
                   edge_kernels, expert_name, group_count, replicate_pad1)

__all__ = [
    'WordCrossAttention', 'activation', 'build_experts', 'check_grid',
    'coord_maps', 'edge_kernels', 'expert_name', 'group_count',
    'replicate_pad1'
]
