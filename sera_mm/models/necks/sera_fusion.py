"""SERA-Fusion neck: routed geometry-preserving experts per level, text
modulation and word cross-attention, then aggregation into one map."""
import copy
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.models.layers import (DEFAULT_NORM_CFG, ConvNormAct,
                                   WordCrossAttention, expert_name)
from sera_mm.models.routers import ExpertRouter  # noqa: F401 (registers)
from sera_mm.models.routers.mixture import mix_experts
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS
from .fusion_experts import build_fusion_experts


class SentenceFiLM(nn.Module):
    """Feature-wise modulation from the sentence feature.

    ``x * (1 + dgamma) + beta`` with ``(dgamma, beta) = Linear(LN(s))``; the
    linear layer is zero-initialised so the modulation starts as identity
    (gamma = 1, beta = 0).
    """

    def __init__(self, channels: int, text_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(text_channels)
        self.proj = nn.Linear(text_channels, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, sentence: Tensor) -> Tensor:
        """x (B, C, h, w), sentence (B, C_t) -> (B, C, h, w)."""
        dgamma, beta = self.proj(self.norm(sentence)).chunk(2, dim=1)
        return x * (1 + dgamma[:, :, None, None]) + beta[:, :, None, None]


@MODELS.register_module()
class SERAFusion(nn.Module):
    """Multi-level, expression-aware fusion neck.

    For every level i (input (B, C_i, h_i, w_i)):

    1. lateral 1x1 conv + GroupNorm + ReLU: C_i -> ``channels``;
    2. routed experts at the level's own resolution: router i weights the
       level's experts ('identity', 'conv3x3', 'dilated3x3', 'coord',
       'multiscale', or the paper's 'paper_*' experts) and
       :func:`mix_experts` mixes them, ``m = sum_e w_e expert_e(x)`` (with
       top-k routing only the selected experts run per sample); the level
       feature becomes ``x + m`` (``residual=True``) or ``m``
       (``residual=False``);
    3. sentence FiLM (gamma starts at 1, beta at 0);
    4. word cross-attention (key padding mask respected) with residual and
       LayerNorm over channels (``word_attention=False`` skips it);
    5. bilinear resize to the size of ``feats[fuse_level]``.

    The levels are then aggregated: ``aggregate='concat'`` concatenates them
    and applies a 3x3 conv + GroupNorm + ReLU back to ``channels``;
    ``aggregate='sum'`` is a softmax-weighted sum with one learned logit per
    level (starting equal).

    Each level owns its experts and its router; routers are in
    ``self.routers`` (``routers[i].expert_names`` are the expert names).

    ``residual=False`` is for experts that are residual themselves, like
    the SERA paper's (``f_e(x) = x + g_e(x)``): with weights summing to 1
    the level feature is then ``x + sum_e w_e g_e(x)``, the paper's
    formula. With gates that do not sum to 1 (top-k with ``gate='prob'``:
    the kept experts' probabilities) it is ``(sum_e w_e) x + sum_e w_e
    g_e(x)``, which is still the paper's ``sum_e w_e f_e(x)`` as written;
    the identity path is then scaled by the kept probability mass.

    Args:
        in_channels: channels of every input level.
        text_channels: word/sentence feature width C_t.
        channels: output width C_f.
        experts: expert short names or config dicts.
        router: router config; ``in_channels`` (= channels),
            ``text_channels`` and ``num_experts`` are filled in.
        fuse_level: index of the level whose size is the output size.
        num_heads: heads of the word cross-attention.
        word_attention: apply word cross-attention per level.
        aggregate: 'concat' or 'sum'.
        residual: add the expert mixture to the lateral feature (True) or
            use the mixture as the level feature (False, for residual
            experts).
        norm_cfg: mmcv norm config of the lateral and fuse blocks (default
            GroupNorm; e.g. dict(type='SyncBN')).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 text_channels: int,
                 channels: int = 256,
                 experts: Sequence[Union[str, dict]] = ('identity', 'conv3x3',
                                                        'dilated3x3', 'coord',
                                                        'multiscale'),
                 router: dict = dict(type='ExpertRouter'),
                 fuse_level: int = 0,
                 num_heads: int = 8,
                 word_attention: bool = True,
                 aggregate: str = 'concat',
                 residual: bool = True,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        in_channels = list(in_channels)
        if len(in_channels) == 0:
            raise ValueError('in_channels must list at least one level')
        if not 0 <= fuse_level < len(in_channels):
            raise ValueError(f'fuse_level must be in [0, {len(in_channels)})'
                             f', got {fuse_level}')
        if aggregate not in ('concat', 'sum'):
            raise ValueError(
                f"aggregate must be 'concat' or 'sum', got {aggregate!r}")
        self.in_channels = in_channels
        self.text_channels = text_channels
        self.channels = channels
        self.fuse_level = fuse_level
        self.word_attention = word_attention
        self.aggregate = aggregate
        self.residual = bool(residual)
        self.expert_names = [expert_name(e) for e in experts]
        num_levels = len(in_channels)

        self.laterals = nn.ModuleList(
            [ConvNormAct(c, channels, 1, norm_cfg=norm_cfg)
             for c in in_channels])
        self.level_experts = nn.ModuleList(
            [build_fusion_experts(list(experts), channels)
             for _ in range(num_levels)])
        router_cfg = copy.deepcopy(dict(router))
        router_cfg.update(
            in_channels=channels,
            text_channels=text_channels,
            num_experts=len(self.expert_names))
        self.routers = nn.ModuleList()
        for _ in range(num_levels):
            r = MODELS.build(copy.deepcopy(router_cfg))
            r.expert_names = list(self.expert_names)
            self.routers.append(r)
        self.films = nn.ModuleList(
            [SentenceFiLM(channels, text_channels) for _ in range(num_levels)])
        if word_attention:
            self.word_attns = nn.ModuleList([
                WordCrossAttention(channels, text_channels, num_heads)
                for _ in range(num_levels)
            ])
            self.attn_norms = nn.ModuleList(
                [nn.LayerNorm(channels) for _ in range(num_levels)])
        if aggregate == 'concat':
            self.fuse = ConvNormAct(num_levels * channels, channels, 3,
                                    norm_cfg=norm_cfg)
        else:
            self.level_logits = nn.Parameter(torch.zeros(num_levels))

    def _check_inputs(self, feats: List[Tensor], text: TextFeatures) -> None:
        if len(feats) != len(self.in_channels):
            raise ValueError(f'feats must hold {len(self.in_channels)} '
                             f'levels, got {len(feats)}')
        b = text.sentence.shape[0]
        for i, (f, c) in enumerate(zip(feats, self.in_channels)):
            if f.dim() != 4 or f.shape[1] != c:
                raise ValueError(
                    f'feats[{i}] must have shape (B, {c}, h, w), got '
                    f'{tuple(f.shape)}')
            if f.shape[0] != b:
                raise ValueError(f'feats[{i}] batch ({f.shape[0]}) must equal'
                                 f' text batch ({b})')
        if text.sentence.shape[-1] != self.text_channels or (
                text.words.shape[-1] != self.text_channels):
            raise ValueError(
                f'text channels must be {self.text_channels}, got words '
                f'{tuple(text.words.shape)}, sentence '
                f'{tuple(text.sentence.shape)}')

    def _level(self, i: int, x: Tensor, text: TextFeatures) -> Tensor:
        """One level at its own resolution: (B, C_i, h, w) -> (B, C, h, w)."""
        x = self.laterals[i](x)
        weights = self.routers[i](x, text.sentence)  # (B, E) | (B, E, h, w)
        mixed = mix_experts(self.level_experts[i], x, weights)
        x = x + mixed if self.residual else mixed
        x = self.films[i](x, text.sentence)
        if self.word_attention:
            b, c, h, w = x.shape
            tokens = x.flatten(2).transpose(1, 2)  # (B, hw, C)
            tokens = tokens + self.word_attns[i](tokens, text.words,
                                                 text.pad_mask)
            tokens = self.attn_norms[i](tokens)
            x = tokens.transpose(1, 2).reshape(b, c, h, w)
        return x

    def forward(self, feats: Sequence[Tensor], text: TextFeatures) -> Tensor:
        """Fuse the levels.

        Args:
            feats: level grids, feats[i] of shape (B, in_channels[i], h_i,
                w_i).
            text: encoded expressions (words (B, L, C_t), pad_mask (B, L),
                sentence (B, C_t)).

        Returns:
            Tensor: (B, channels, h, w) at the size of ``feats[fuse_level]``.
        """
        feats = list(feats)
        self._check_inputs(feats, text)
        size = feats[self.fuse_level].shape[-2:]
        outs = []
        for i, f in enumerate(feats):
            y = self._level(i, f, text)
            if y.shape[-2:] != size:
                y = F.interpolate(
                    y, size=size, mode='bilinear', align_corners=False)
            outs.append(y)
        if self.aggregate == 'concat':
            return self.fuse(torch.cat(outs, dim=1))
        level_w = F.softmax(self.level_logits, dim=0)
        return sum(w * y for w, y in zip(level_w, outs))
