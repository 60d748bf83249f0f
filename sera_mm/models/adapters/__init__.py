"""SERA-Adapter and its parts: grid experts and word cross-attention."""
from .cross_attention import WordCrossAttention
from .experts import (EXPERT_TYPES, BoundaryExpert, ContextExpert,
                      SemanticExpert, SpatialExpert, build_experts)
from .sera_adapter import SERAAdapter

__all__ = [
    'WordCrossAttention', 'SpatialExpert', 'ContextExpert', 'BoundaryExpert',
    'SemanticExpert', 'EXPERT_TYPES', 'build_experts', 'SERAAdapter'
]
