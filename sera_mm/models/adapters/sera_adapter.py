"""SERA-Adapter: routed grid experts plus word cross-attention, inserted
after a backbone block as a zero-initialised residual."""
import copy
from contextlib import nullcontext
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from sera_mm.models.routers import ExpertRouter  # noqa: F401 (registers)
from sera_mm.models.routers import recomputation
from sera_mm.models.routers.mixture import mix_experts
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS
from sera_mm.models.layers import (WordCrossAttention, check_text_features,
                                   maybe_checkpoint,
                                   check_token_layout)
from .experts import build_experts, expert_name


def _recompute_quietly():
    """``checkpoint``'s context_fn: the forward as usual; its recomputation
    in the backward pass leaves the routers' records and state alone."""
    return nullcontext(), recomputation()


@MODELS.register_module()
class SERAAdapter(nn.Module):
    """Spatio-semantic expert adapter for a block's token sequence.

    Data flow, for tokens (B, N, C) with N = num_prefix + h * w::

        x = down(LN(tokens))                         # (B, N, d)
        g = patch part of x as a grid                 # (B, d, h, w)
        y = sum_e w_e * expert_e(g)                   # w from the router
                                                      # (top-k: only the
                                                      # routed experts run)
        q = y as tokens (B, hw, d); q = q + attn(q, words, pad_mask)
        delta = up(GELU(dropout(q))) * scale          # (B, hw, C)
        out = tokens + [0 for prefix tokens ; delta for patch tokens]

    Prefix tokens (CLS, registers) are kept aside and receive a zero delta:
    the experts are defined on the grid only, and leaving the prefix
    untouched keeps the backbone's global tokens as pretrained.

    The up-projection (weight and bias) is zero-initialised, so at
    initialisation the adapter returns its input bit-exactly.

    Args:
        in_channels: token width C.
        text_channels: word/sentence feature width C_t.
        hidden_channels: adapter width d (divisible by ``num_heads``).
        experts: expert short names ('spatial', 'context', 'boundary',
            'semantic') or expert config dicts; one or more.
        router: router config; ``in_channels`` (= d), ``text_channels`` and
            ``num_experts`` are filled in.
        num_heads: heads of the word cross-attention.
        init_scale: initial value of the output scale.
        learnable_scale: make the scale a learnable scalar (else a fixed
            buffer).
        dropout: dropout before the up-projection and in the attention.
        with_cp: activation checkpointing of the adapter in training: only
            its input is stored for the backward pass, and the adapter
            (a small fraction of a block's compute) runs again there. Same
            values and gradients (dropout masks are replayed; the routers
            record and keep the first run's routing); an adapter with
            BatchNorm refuses it (its statistics would update twice). For
            a ViT-B/16 at 416 px it keeps about 16 MiB less per adapter and
            image pair.

    Attributes:
        router: the expert router (``router.expert_names`` are the experts'
            names).
        expert_names: names of the experts, in order.
    """

    def __init__(self,
                 in_channels: int,
                 text_channels: int,
                 hidden_channels: int = 64,
                 experts: Sequence[Union[str, dict]] = ('spatial', 'context',
                                                        'boundary',
                                                        'semantic'),
                 router: dict = dict(type='ExpertRouter'),
                 num_heads: int = 4,
                 init_scale: float = 1.0,
                 learnable_scale: bool = True,
                 dropout: float = 0.0,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.in_channels = in_channels
        self.text_channels = text_channels
        self.hidden_channels = hidden_channels
        self.norm = nn.LayerNorm(in_channels)
        self.down = nn.Linear(in_channels, hidden_channels)
        self.experts = build_experts(list(experts), hidden_channels)
        self.expert_names = [expert_name(e) for e in experts]
        router_cfg = copy.deepcopy(dict(router))
        router_cfg.update(
            in_channels=hidden_channels,
            text_channels=text_channels,
            num_experts=len(self.experts))
        self.router = MODELS.build(router_cfg)
        self.router.expert_names = list(self.expert_names)
        self.cross_attn = WordCrossAttention(
            hidden_channels, text_channels, num_heads, dropout=dropout)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(hidden_channels, in_channels)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        if learnable_scale:
            self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        else:
            self.register_buffer('scale', torch.tensor(float(init_scale)))
        self._check_with_cp()

    def _check_with_cp(self) -> None:
        """``with_cp`` runs the adapter twice per training step: a
        BatchNorm inside would update its running statistics twice."""
        if not self.with_cp:
            return
        bns = [name for name, m in self.named_modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bns:
            raise ValueError(
                f'{type(self).__name__}(with_cp=True) recomputes the adapter '
                f'in the backward pass, which would update the running '
                f'statistics of its BatchNorm layers {bns} twice per step; '
                f'use with_cp=False or a norm without running statistics '
                f'(e.g. norm_cfg=dict(type=\'GN\', ...))')

    def _check_inputs(self, tokens: Tensor, hw: Tuple[int, int],
                      num_prefix: int, text: TextFeatures) -> None:
        check_token_layout(tokens, self.in_channels, hw, num_prefix)
        check_text_features(text, tokens.shape[0], self.text_channels,
                            pad_mask=False)

    def _to_grid(self, tokens: Tensor, hw: Tuple[int, int],
                 num_prefix: int) -> Tensor:
        """(B, N, C) -> adapter grid, (B, d, h, w)."""
        h, w = int(hw[0]), int(hw[1])
        x = self.down(self.norm(tokens))  # (B, N, d)
        patch = x[:, num_prefix:]  # (B, hw, d)
        return patch.transpose(1, 2).reshape(tokens.shape[0],
                                             self.hidden_channels, h, w)

    def _refine_grid(self, grid: Tensor, text: TextFeatures) -> Tensor:
        """The routed expert mixture, (B, d, h, w) -> (B, d, h, w).
        Subclasses (SERAPaperAdapter) override this step only."""
        weights = self.router(grid, text.sentence)  # (B, E) | (B, E, h, w)
        return mix_experts(self.experts, grid, weights)

    def _add_delta(self, tokens: Tensor, grid: Tensor, num_prefix: int,
                   text: TextFeatures) -> Tensor:
        """tokens (B, N, C) + delta from the refined grid (B, d, h, w)."""
        b = tokens.shape[0]
        q = grid.flatten(2).transpose(1, 2)  # (B, hw, d)
        q = q + self.cross_attn(q, text.words, text.pad_mask)
        delta = self.up(self.drop(self.act(q))) * self.scale  # (B, hw, C)
        if num_prefix > 0:
            delta = torch.cat([delta.new_zeros(b, num_prefix, delta.shape[2]),
                               delta],
                              dim=1)
        return tokens + delta

    def forward(self, tokens: Tensor, hw: Tuple[int, int], num_prefix: int,
                text: TextFeatures) -> Tensor:
        """Add the adapter's delta to a block's tokens.

        Args:
            tokens: block output, (B, N, C), N = num_prefix + h * w, prefix
                tokens first, patch tokens in row-major grid order.
            hw: grid size (h, w).
            num_prefix: number of prefix tokens (CLS, registers), >= 0.
            text: encoded expressions (words (B, L, C_t), pad_mask (B, L),
                sentence (B, C_t)).

        Returns:
            Tensor: tokens + delta, (B, N, C).
        """
        self._check_inputs(tokens, hw, num_prefix, text)
        return maybe_checkpoint(self.with_cp and self.training,
                                self._adapted, tokens, hw, num_prefix, text,
                                params=self.parameters(),
                                context_fn=_recompute_quietly)

    def _adapted(self, tokens: Tensor, hw: Tuple[int, int], num_prefix: int,
                 text: TextFeatures) -> Tensor:
        grid = self._to_grid(tokens, hw, num_prefix)  # (B, d, h, w)
        grid = self._refine_grid(grid, text)  # (B, d, h, w)
        return self._add_delta(tokens, grid, num_prefix, text)
