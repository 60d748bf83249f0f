"""ETRIS's bridger (Xu et al., ICCV 2023) as a token-level adapter with the
SERA-Adapter interface ``forward(tokens, hw, num_prefix, text) -> tokens``."""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from sera_mm.structures import TextFeatures
from sera_mm.models.layers import check_text_features, check_token_layout
from sera_mm.registry import MODELS


@MODELS.register_module()
class ETRISBridge(nn.Module):
    """Vision-language bridge inserted after a frozen backbone block.

    ETRIS places a bridger between the frozen image and text encoders every
    few blocks: both streams are projected to a small width d (64), interact
    through attention, and the result is projected back and added to the
    streams. This module is the visual side of that bridge::

        v = down_v(LN(patch tokens))               # (B, hw, d)
        t = down_t(LN(words))                      # (B, L, d)
        v = v + MHA(LN(v), t, t, pad_mask)         # visual queries over words
        v = v + FFN(LN(v))                         # (B, hw, d)
        delta = up(v)                              # (B, hw, C), zero-init
        out = tokens + [0 for prefix tokens ; delta for patch tokens]

    Differences from ETRIS, by design of the adapter interface (a module
    that maps a block's visual tokens to new visual tokens):

    * ETRIS's bridge is bidirectional (it also updates the text encoder's
      hidden states). Here the text features are the text encoder's final
      output, read only; updating the text stream is out of scope.
    * Prefix tokens (CLS) receive a zero delta, as with the SERA-Adapter, so
      the two adapters are compared on the same tokens.
    * The up-projection is zero-initialised (weight and bias), so the bridge
      starts as an exact identity and the frozen backbone's output is
      unchanged at initialisation.

    Padded words (``pad_mask`` True) get zero attention weight; a sample
    whose words are all padding gets no attention update.

    Args:
        in_channels: token width C.
        text_channels: word feature width C_t.
        hidden_channels: bridge width d (ETRIS: 64); divisible by
            ``num_heads``.
        num_heads: attention heads.
        ffn_ratio: FFN hidden width as a multiple of d (0 disables the FFN).
        dropout: dropout in the attention and the FFN.
    """

    def __init__(self,
                 in_channels: int,
                 text_channels: int,
                 hidden_channels: int = 64,
                 num_heads: int = 4,
                 ffn_ratio: float = 2.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_channels % num_heads != 0:
            raise ValueError(f'hidden_channels ({hidden_channels}) must be '
                             f'divisible by num_heads ({num_heads})')
        self.in_channels = int(in_channels)
        self.text_channels = int(text_channels)
        self.hidden_channels = int(hidden_channels)
        d = self.hidden_channels
        self.norm_v = nn.LayerNorm(in_channels)
        self.down_v = nn.Linear(in_channels, d)
        self.norm_t = nn.LayerNorm(text_channels)
        self.down_t = nn.Linear(text_channels, d)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(
            d, num_heads, dropout=dropout, batch_first=True)
        ffn_hidden = int(round(d * ffn_ratio))
        if ffn_hidden > 0:
            self.ffn_norm = nn.LayerNorm(d)
            self.ffn = nn.Sequential(
                nn.Linear(d, ffn_hidden), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(ffn_hidden, d))
        else:
            self.ffn = None
        self.up = nn.Linear(d, in_channels)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def _check_inputs(self, tokens: Tensor, hw: Tuple[int, int],
                      num_prefix: int, text: TextFeatures) -> None:
        check_token_layout(tokens, self.in_channels, hw, num_prefix)
        check_text_features(text, tokens.shape[0], self.text_channels,
                            sentence=False)

    def forward(self, tokens: Tensor, hw: Tuple[int, int], num_prefix: int,
                text: TextFeatures) -> Tensor:
        """Add the bridge's delta to a block's tokens.

        Args:
            tokens: block output, (B, N, C), N = num_prefix + h * w.
            hw: grid size (h, w) of the patch tokens.
            num_prefix: number of prefix tokens (CLS, registers), >= 0.
            text: encoded expressions; ``words`` (B, L, C_t) and
                ``pad_mask`` (B, L, True = padding) are used.

        Returns:
            Tensor: tokens + delta, (B, N, C).
        """
        self._check_inputs(tokens, hw, num_prefix, text)
        b = tokens.shape[0]
        v = self.down_v(self.norm_v(tokens[:, num_prefix:]))  # (B, hw, d)
        t = self.down_t(self.norm_t(text.words))  # (B, L, d)
        pad_mask = text.pad_mask.to(torch.bool)
        all_pad = pad_mask.all(dim=1)  # (B,)
        if all_pad.any():
            # keep the softmax finite, then drop the update for those rows
            pad_mask = pad_mask & ~all_pad[:, None]
        upd, _ = self.attn(
            self.attn_norm(v), t, t, key_padding_mask=pad_mask,
            need_weights=False)
        if all_pad.any():
            upd = upd.masked_fill(all_pad[:, None, None], 0.0)
        v = v + upd
        if self.ffn is not None:
            v = v + self.ffn(self.ffn_norm(v))
        delta = self.up(v)  # (B, hw, C)
        if num_prefix > 0:
            delta = torch.cat(
                [delta.new_zeros(b, num_prefix, delta.shape[2]), delta],
                dim=1)
        return tokens + delta
