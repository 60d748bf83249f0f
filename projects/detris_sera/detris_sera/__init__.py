"""DETRIS (Huang et al., AAAI 2025) as a SERA-MM project, and the SERA paper's
model built on it (SERA-Adapter in place of DETRIS's visual adapters,
SERA-Fusion on the neck's fusion-stage maps). Imported by the project's
configs through ``custom_imports``."""
from .adapters import (DenseMultiScaleBranches, DETRISTextAdapter,
                       DETRISVisualAdapter, GridWordAttention,
                       SERAPaperDenseAdapter)
from .backbone import DETRISDINOv2Backbone
from .neck import DETRISNeck, RoutedExpertBlock, SentenceGate
from .text_encoder import DETRISTextEncoder

__all__ = [
    'DenseMultiScaleBranches', 'DETRISTextAdapter', 'DETRISVisualAdapter',
    'GridWordAttention', 'SERAPaperDenseAdapter', 'DETRISDINOv2Backbone',
    'DETRISNeck', 'RoutedExpertBlock', 'SentenceGate', 'DETRISTextEncoder'
]
