"""Necks: the SERA-Fusion neck and its geometry-preserving experts (SERA-MM's
own and the SERA paper's)."""
from .fusion_experts import (FUSION_EXPERT_TYPES, PAPER_FUSION_EXPERT_TYPES,
                             ConvFusionExpert, CoordFusionExpert,
                             DilatedFusionExpert, MultiScaleFusionExpert,
                             PointwiseFusionExpert, build_fusion_experts)
from .paper_fusion_experts import (PaperBoundaryFusionExpert,
                                   PaperContextFusionExpert,
                                   PaperShapeFusionExpert,
                                   PaperSpatialFusionExpert)
from .sera_fusion import SentenceFiLM, SERAFusion

__all__ = [
    'FUSION_EXPERT_TYPES', 'PAPER_FUSION_EXPERT_TYPES',
    'PointwiseFusionExpert', 'ConvFusionExpert', 'DilatedFusionExpert',
    'CoordFusionExpert', 'MultiScaleFusionExpert', 'PaperSpatialFusionExpert',
    'PaperContextFusionExpert', 'PaperBoundaryFusionExpert',
    'PaperShapeFusionExpert', 'build_fusion_experts', 'SentenceFiLM',
    'SERAFusion'
]
