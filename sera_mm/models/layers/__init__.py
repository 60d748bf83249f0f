"""Layers and helpers that several model parts use (the parts import these
and :mod:`sera_mm.structures`, never each other): word cross-attention,
grid checks, fixed filters, padding, coordinate maps, GroupNorm group
counts, activations by name, the expert builder, the input checks of
token adapters, conv-norm-activation blocks from mmcv's bricks,
CLIP's quick GELU with a lean backward and activation checkpointing."""
from .checkpointing import maybe_checkpoint
from .conv import DEFAULT_NORM_CFG, ConvNormAct, norm_cfg_for
from .cross_attention import WordCrossAttention
from .grid import (activation, build_experts, check_grid, coord_maps,
                   edge_kernels, expert_name, group_count, replicate_pad1)
from .quick_gelu import QuickGELU, use_lean_quick_gelu
from .tokens import check_text_features, check_token_layout

__all__ = [
    'ConvNormAct', 'DEFAULT_NORM_CFG', 'norm_cfg_for', 'WordCrossAttention', 'activation', 'build_experts', 'check_grid',
    'coord_maps', 'edge_kernels', 'expert_name', 'group_count',
    'replicate_pad1', 'check_token_layout', 'check_text_features',
    'QuickGELU', 'use_lean_quick_gelu', 'maybe_checkpoint'
]
