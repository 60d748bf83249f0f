"""Necks: the SERA-Fusion neck and its geometry-preserving experts."""
from .fusion_experts import (FUSION_EXPERT_TYPES, ConvFusionExpert,
                             CoordFusionExpert, DilatedFusionExpert,
                             MultiScaleFusionExpert, PointwiseFusionExpert,
                             build_fusion_experts)
from .sera_fusion import SentenceFiLM, SERAFusion

__all__ = [
    'FUSION_EXPERT_TYPES', 'PointwiseFusionExpert', 'ConvFusionExpert',
    'DilatedFusionExpert', 'CoordFusionExpert', 'MultiScaleFusionExpert',
    'build_fusion_experts', 'SentenceFiLM', 'SERAFusion'
]
