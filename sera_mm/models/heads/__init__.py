"""Decode heads: text-conditioned mask prediction, and the optional
no-target decision of generalised RIS."""
from .no_target_head import NoTargetHead, no_target_labels
from .sera_head import SERAHead
from .vl_decoder import (VLDecoderLayer, VLTransformerDecoder,
                         sine_position_encoding_1d, sine_position_encoding_2d)

__all__ = [
    'SERAHead', 'NoTargetHead', 'no_target_labels', 'VLDecoderLayer',
    'VLTransformerDecoder', 'sine_position_encoding_1d',
    'sine_position_encoding_2d'
]
