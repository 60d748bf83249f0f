"""Cross-attention of visual tokens over the words of an expression."""
import torch
import torch.nn as nn
from torch import Tensor

from sera_mm.registry import MODELS


@MODELS.register_module()
class WordCrossAttention(nn.Module):
    """Visual tokens (queries) attend over word features (keys/values).

    Queries are layer-normalised, words are layer-normalised and projected to
    the query width inside the attention (``kdim = vdim = text_channels``).
    Padded words (``pad_mask`` True) get zero attention weight. A sample
    whose words are all padding gets a zero output (instead of the NaN plain
    attention would give). The module returns the attention output only;
    the caller adds the residual.

    Args:
        channels: query width d (divisible by ``num_heads``).
        text_channels: word feature width C_t.
        num_heads: attention heads.
        dropout: attention dropout.
    """

    def __init__(self,
                 channels: int,
                 text_channels: int,
                 num_heads: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f'channels ({channels}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.channels = channels
        self.text_channels = text_channels
        self.num_heads = num_heads
        self.query_norm = nn.LayerNorm(channels)
        self.text_norm = nn.LayerNorm(text_channels)
        self.attn = nn.MultiheadAttention(
            channels,
            num_heads,
            dropout=dropout,
            kdim=text_channels,
            vdim=text_channels,
            batch_first=True)

    def forward(self, query: Tensor, words: Tensor,
                pad_mask: Tensor) -> Tensor:
        """Attend.

        Args:
            query: visual tokens, (B, N, d).
            words: word features, (B, L, C_t).
            pad_mask: (B, L) bool, True where the word is padding.

        Returns:
            Tensor: attention output, (B, N, d).
        """
        if query.dim() != 3 or query.shape[2] != self.channels:
            raise ValueError(f'query must have shape (B, N, {self.channels}),'
                             f' got {tuple(query.shape)}')
        if words.dim() != 3 or words.shape[2] != self.text_channels:
            raise ValueError(
                f'words must have shape (B, L, {self.text_channels}), got '
                f'{tuple(words.shape)}')
        if words.shape[0] != query.shape[0]:
            raise ValueError(f'words batch ({words.shape[0]}) must equal '
                             f'query batch ({query.shape[0]})')
        if pad_mask.shape != words.shape[:2]:
            raise ValueError(
                f'pad_mask must have shape {tuple(words.shape[:2])} (B, L), '
                f'got {tuple(pad_mask.shape)}')
        pad_mask = pad_mask.to(torch.bool)
        all_pad = pad_mask.all(dim=1)  # (B,)
        if all_pad.any():
            # Unmask rows without any word so softmax stays finite, then
            # zero their output below.
            pad_mask = pad_mask & ~all_pad[:, None]
        out, _ = self.attn(
            self.query_norm(query),
            self.text_norm(words),
            self.text_norm(words),
            key_padding_mask=pad_mask,
            need_weights=False)
        if all_pad.any():
            out = out.masked_fill(all_pad[:, None, None], 0.0)
        return out
