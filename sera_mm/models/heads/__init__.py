"""Decode heads: text-conditioned mask prediction."""
from .sera_head import SERAHead
from .vl_decoder import (VLDecoderLayer, VLTransformerDecoder,
                         sine_position_encoding_1d, sine_position_encoding_2d)

__all__ = [
    'SERAHead', 'VLDecoderLayer', 'VLTransformerDecoder',
    'sine_position_encoding_1d', 'sine_position_encoding_2d'
]
