"""The structure every text encoder returns and every text-conditioned
module consumes."""
from typing import NamedTuple

from torch import Tensor


class TextFeatures(NamedTuple):
    """Encoded referring expressions.

    Attributes:
        words: word (token) features, shape (B, L, C_t).
        pad_mask: shape (B, L), bool, True where the position is padding
            (the convention of ``key_padding_mask`` in PyTorch attention).
        sentence: one feature per expression, shape (B, C_t) (CLIP: the EOT
            token after the final projection; BERT-family: masked mean).
    """
    words: Tensor
    pad_mask: Tensor
    sentence: Tensor
