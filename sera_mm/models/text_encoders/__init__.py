"""Text encoders: raw referring expressions -> TextFeatures."""
from .clip_text_encoder import CLIPTextEncoder
from .hf_text_encoder import HFTextEncoder
from sera_mm.structures import TextFeatures

__all__ = ['TextFeatures', 'CLIPTextEncoder', 'HFTextEncoder']
