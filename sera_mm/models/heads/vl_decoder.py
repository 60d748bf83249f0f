"""Vision-language transformer decoder: visual tokens attend to themselves
(with a 2D sine positional encoding) and to the words of the expression."""
import math
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor


def sine_position_encoding_2d(channels: int,
                              h: int,
                              w: int,
                              temperature: float = 10000.0,
                              device: Optional[torch.device] = None,
                              dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed 2D sine/cosine positional encoding (DETR style).

    The first half of the channels encodes the row (y), the second half the
    column (x); each half is [sin, cos] over ``channels / 4`` frequencies.
    Positions are normalised to [0, 2*pi] so the encoding does not depend on
    the grid size.

    Args:
        channels: encoding width; must be a multiple of 4.
        h, w: grid size.

    Returns:
        Tensor: (h * w, channels), row-major (the order of
        ``x.flatten(2)`` for a (B, C, h, w) map).
    """
    if channels % 4 != 0:
        raise ValueError(
            f'channels must be a multiple of 4 for a 2D sine encoding, got '
            f'{channels}')
    quarter = channels // 4
    scale = 2 * math.pi
    eps = 1e-6
    y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5)
    x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5)
    y = y / (h + eps) * scale
    x = x / (w + eps) * scale
    dim_t = torch.arange(quarter, device=device, dtype=torch.float32)
    dim_t = temperature**(dim_t / quarter)
    pos_y = y[:, None] / dim_t  # (h, q)
    pos_x = x[:, None] / dim_t  # (w, q)
    pos_y = torch.cat([pos_y.sin(), pos_y.cos()], dim=1)  # (h, 2q)
    pos_x = torch.cat([pos_x.sin(), pos_x.cos()], dim=1)  # (w, 2q)
    pos = torch.cat([
        pos_y[:, None, :].expand(h, w, 2 * quarter),
        pos_x[None, :, :].expand(h, w, 2 * quarter)
    ], dim=2)
    return pos.reshape(h * w, channels).to(dtype)


def sine_position_encoding_1d(channels: int,
                              length: int,
                              temperature: float = 10000.0,
                              device: Optional[torch.device] = None,
                              dtype: torch.dtype = torch.float32) -> Tensor:
    """Transformer sine/cosine encoding of word positions: (length, C);
    ``channels`` must be even."""
    if channels % 2 != 0:
        raise ValueError(
            f'channels must be even for a 1D sine encoding, got {channels}')
    half = channels // 2
    pos = torch.arange(length, device=device, dtype=torch.float32)
    dim_t = temperature**(
        torch.arange(half, device=device, dtype=torch.float32) / half)
    angles = pos[:, None] / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=1).to(dtype)


class VLDecoderLayer(nn.Module):
    """One decoder layer over visual tokens.

    With ``norm_first=True`` (pre-norm, the default; stabler for deep
    stacks and what CRIS-style decoders use)::

        x = x + SelfAttn(q=k=LN(x)+pos, v=LN(x))
        x = x + CrossAttn(q=LN(x)+pos, k=words+word_pos, v=words,
                          key_padding_mask=pad_mask)
        x = x + FFN(LN(x))

    With ``norm_first=False`` (post-norm, as the original Transformer) each
    residual sum is followed by its LayerNorm instead.

    Args:
        channels: token width C.
        num_heads: attention heads (C must be divisible by it).
        ffn_channels: hidden width of the FFN.
        dropout: dropout on attention weights and residual branches.
        norm_first: pre-norm (True) or post-norm (False).
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 ffn_channels: int = 1024,
                 dropout: float = 0.1,
                 norm_first: bool = True) -> None:
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f'channels ({channels}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.norm_first = norm_first
        self.self_attn = nn.MultiheadAttention(
            channels, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(
            channels, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(channels, ffn_channels), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(ffn_channels, channels))
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.norm3 = nn.LayerNorm(channels)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)
        self.drop3 = nn.Dropout(dropout)

    def _self_block(self, x: Tensor, pos: Tensor) -> Tensor:
        q = x + pos
        return self.drop1(self.self_attn(q, q, x, need_weights=False)[0])

    def _cross_block(self, x: Tensor, pos: Tensor, words: Tensor,
                     word_pos: Tensor, pad_mask: Tensor) -> Tensor:
        out = self.cross_attn(
            x + pos,
            words + word_pos,
            words,
            key_padding_mask=pad_mask,
            need_weights=False)[0]
        return self.drop2(out)

    def forward(self, x: Tensor, pos: Tensor, words: Tensor, word_pos: Tensor,
                pad_mask: Tensor) -> Tensor:
        """Args:
            x: visual tokens (B, N, C).
            pos: visual positional encoding (N, C) or (B, N, C).
            words: word features (B, L, C).
            word_pos: word positional encoding (L, C) or (B, L, C).
            pad_mask: (B, L) bool, True = padding (ignored by attention).

        Returns:
            Tensor: (B, N, C).
        """
        if self.norm_first:
            x = x + self._self_block(self.norm1(x), pos)
            x = x + self._cross_block(
                self.norm2(x), pos, words, word_pos, pad_mask)
            x = x + self.drop3(self.ffn(self.norm3(x)))
        else:
            x = self.norm1(x + self._self_block(x, pos))
            x = self.norm2(
                x + self._cross_block(x, pos, words, word_pos, pad_mask))
            x = self.norm3(x + self.drop3(self.ffn(x)))
        return x


class VLTransformerDecoder(nn.Module):
    """A stack of :class:`VLDecoderLayer` on a visual grid.

    Data flow for x (B, C, h, w) and words (B, L, C)::

        tokens = x.flatten(2).transpose(1, 2)       # (B, h*w, C)
        pos = sine_position_encoding_2d(C, h, w)     # (h*w, C)
        for layer in layers: tokens = layer(tokens, pos, words, ...)
        tokens = LN(tokens) if norm_first           # final norm, pre-norm
        -> (B, C, h, w)

    Words get a 1D sine encoding added to their keys. A sample whose words
    are all padding would make attention undefined; such rows are attended
    in full instead (the text encoders always keep at least one token).

    Args:
        channels: width C (a multiple of 4 and of ``num_heads``).
        num_layers: number of layers (0 is an identity).
        num_heads, ffn_channels, dropout, norm_first: see
            :class:`VLDecoderLayer`.
    """

    def __init__(self,
                 channels: int,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 ffn_channels: int = 1024,
                 dropout: float = 0.1,
                 norm_first: bool = True) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f'num_layers must be >= 0, got {num_layers}')
        if channels % 4 != 0:
            raise ValueError(
                f'channels must be a multiple of 4, got {channels}')
        self.channels = channels
        self.norm_first = norm_first
        self.layers = nn.ModuleList([
            VLDecoderLayer(channels, num_heads, ffn_channels, dropout,
                           norm_first) for _ in range(num_layers)
        ])
        self.final_norm = nn.LayerNorm(channels) if (
            norm_first and num_layers > 0) else nn.Identity()

    def forward(self, x: Tensor, words: Tensor, pad_mask: Tensor) -> Tensor:
        """Args:
            x: visual grid (B, C, h, w).
            words: word features already projected to C, (B, L, C).
            pad_mask: (B, L) bool, True = padding.

        Returns:
            Tensor: (B, C, h, w).
        """
        b, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f'x must have {self.channels} channels, got '
                             f'shape {tuple(x.shape)}')
        if words.dim() != 3 or words.shape[0] != b or words.shape[2] != c:
            raise ValueError(f'words must have shape ({b}, L, {c}), got '
                             f'{tuple(words.shape)}')
        if pad_mask.shape != words.shape[:2]:
            raise ValueError(f'pad_mask must have shape '
                             f'{tuple(words.shape[:2])}, got '
                             f'{tuple(pad_mask.shape)}')
        pad_mask = pad_mask.bool()
        all_pad = pad_mask.all(dim=1, keepdim=True)
        pad_mask = pad_mask & ~all_pad
        tokens = x.flatten(2).transpose(1, 2)
        pos = sine_position_encoding_2d(
            c, h, w, device=x.device, dtype=x.dtype)
        word_pos = sine_position_encoding_1d(
            c, words.shape[1], device=x.device, dtype=x.dtype)
        for layer in self.layers:
            tokens = layer(tokens, pos, words, word_pos, pad_mask)
        tokens = self.final_norm(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)
