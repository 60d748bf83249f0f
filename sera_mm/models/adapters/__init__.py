"""SERA-Adapter and its parts: grid experts and word cross-attention; the
SERA paper's own adapter design beside it."""
from sera_mm.models.layers import WordCrossAttention
from .experts import (EXPERT_TYPES, BoundaryExpert, ContextExpert,
                      SemanticExpert, SpatialExpert, build_experts)
from .paper_adapter import SERAPaperAdapter
from .paper_experts import (PaperAdapterBoundaryExpert,
                            PaperAdapterSpatialExpert, PaperMultiScaleBranches)
from .sera_adapter import SERAAdapter

__all__ = [
    'WordCrossAttention', 'SpatialExpert', 'ContextExpert', 'BoundaryExpert',
    'SemanticExpert', 'EXPERT_TYPES', 'build_experts', 'SERAAdapter',
    'PaperMultiScaleBranches', 'PaperAdapterSpatialExpert',
    'PaperAdapterBoundaryExpert', 'SERAPaperAdapter'
]
