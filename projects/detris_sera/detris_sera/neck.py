"""DETRIS's neck (a CRIS-style fusion of three levels with the sentence)
and the SERA paper's SERA-Fusion as a block applied to its fusion-stage
maps before the multimodal interaction."""
import copy
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch import Tensor

from sera_mm.models.layers import coord_maps, expert_name
from sera_mm.models.necks.fusion_experts import build_fusion_experts
from sera_mm.models.routers.mixture import mix_experts
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS

#: The SERA paper's fusion router: from GAP(X) only, Gaussian noise on the
#: logits in training (Shazeer et al.'s learned noise), top-2.
PAPER_FUSION_ROUTER = dict(
    type='ExpertRouter', condition='visual', top_k=2, noise='learned',
    noise_std=1.0)
PAPER_FUSION_EXPERTS = ('paper_spatial', 'paper_context', 'paper_boundary',
                        'paper_shape')


@MODELS.register_module()
class RoutedExpertBlock(nn.Module):
    """The SERA paper's SERA-Fusion on one map X (B, C, h, w)::

        r = W2 act(W1 GAP(X)) (+ noise in training)   # (B, E) logits
        w = softmax over the top-K of r                # zeros elsewhere
        out = sum_e w_e f_e(X)                         # f_e(X) = X + g_e(X)

    The paper's four experts are residual and start as identities
    (:mod:`sera_mm.models.necks.paper_fusion_experts`): spatial
    ``X + a Conv1x1(coords)``, context (self-attention + FFN), boundary
    ``X + phi(Conv1x1([X, |grad|, Gx + Gy]))`` (fixed Sobel), shape (blur +
    Laplacian). With K-renormalised gates the block is
    ``X + sum_e w_e g_e(X)``; only the selected experts run per sample
    (:func:`mix_experts`). The router's auxiliary losses (z-loss, CV^2 of
    the dispatched usage, token assignment) are collected by the segmentor.

    Args:
        channels: C.
        text_channels: C_t (the router's sentence input; unused by a
            visual-only router but checked).
        experts: expert short names or configs.
        router: router config (``in_channels``, ``text_channels``,
            ``num_experts`` filled in; ``hidden_channels`` defaults to
            C / 4).
        residual: add X to the mixture (for non-residual experts).

    Attributes:
        router: the router (``router.expert_names`` set).
        experts: the experts.
    """

    def __init__(self,
                 channels: int,
                 text_channels: int,
                 experts: Sequence[Union[str, dict]] = PAPER_FUSION_EXPERTS,
                 router: dict = PAPER_FUSION_ROUTER,
                 residual: bool = False) -> None:
        super().__init__()
        self.channels = int(channels)
        self.residual = bool(residual)
        self.expert_names = [expert_name(e) for e in experts]
        self.experts = build_fusion_experts(list(experts), channels)
        cfg = copy.deepcopy(dict(router))
        cfg.update(in_channels=channels, text_channels=text_channels,
                   num_experts=len(self.expert_names))
        cfg.setdefault('hidden_channels', max(channels // 4, 8))
        self.router = MODELS.build(cfg)
        self.router.expert_names = list(self.expert_names)

    def forward(self, x: Tensor, text: TextFeatures) -> Tensor:
        """x (B, C, h, w) -> (B, C, h, w)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f'RoutedExpertBlock expects (B, {self.channels},'
                             f' h, w), got {tuple(x.shape)}')
        weights = self.router(x, text.sentence)
        mixed = mix_experts(self.experts, x, weights)
        return x + mixed if self.residual else mixed


class SentenceGate(nn.Module):
    """DETRIS's multimodal interaction of a level with the sentence: the
    grid tokens attend to the (projected) sentence feature and are
    multiplied by the result, ``v * MHA(q=v, k=v=s)``. With one key the
    attention weight is 1, so this is ``v * out(val(s))``: a per-channel,
    sentence-dependent modulation of every location.

    Args:
        channels: C.
        num_heads: heads (DETRIS: 8).
    """

    def __init__(self, channels: int, num_heads: int = 8) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(channels, num_heads,
                                          batch_first=True)

    def forward(self, x: Tensor, sentence: Tensor) -> Tensor:
        """x (B, C, h, w), sentence (B, C) -> (B, C, h, w)."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, hw, C)
        s = sentence[:, None, :]  # (B, 1, C)
        gate = self.attn(tokens, s, s, need_weights=False)[0]
        return (tokens * gate).transpose(1, 2).reshape(b, c, h, w)


@MODELS.register_module()
class DETRISNeck(nn.Module):
    """DETRIS's neck over three levels ``[v3, v4, v5]``::

        p3 = CBR_k(v3)  (kernel = stride = strides[0]: a strided conv)
        p4 = CBR_k(v4)  (strides[1])
        p5 = DeconvBR_k(v5)  (strides[2]: a transposed conv)
        [p_i = block_i(p_i)]          # level_block: SERA-Fusion (paper)
        s = Linear(sentence)          # (B, C)
        f_i = SentenceGate_i(p_i, s)  # multimodal interaction
        q = CBR1x1([f3, f4, f5])      # (B, C, h, w)
        out = q + CBR3x3(CoordConvBR3x3(q))

    DETRIS (DINOv2-B, all levels 32 x 32): ``strides=(1, 1, 1)``,
    ``channels=512`` (its fpn_out[1]). CRIS's ResNet pyramid (strides 8,
    16, 32): ``strides=(2, 1, 2)`` brings every level to the middle one.
    CBR: conv -> norm (``norm_cfg``; DETRIS: SyncBN) -> ReLU.

    Args:
        in_channels: channels of the three levels.
        text_channels: sentence width C_t.
        channels: C, the output width.
        strides: per-level factors to the common size (see above).
        num_heads: heads of the sentence gates.
        norm_cfg: mmcv norm config.
        level_block: optional config of a block applied to every projected
            level before the interaction (one per level), e.g.
            :class:`RoutedExpertBlock` for the SERA paper.

    Attributes:
        channels: output width (the head's ``in_channels``).
        level_blocks: the per-level blocks (empty without ``level_block``).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 text_channels: int,
                 channels: int = 512,
                 strides: Sequence[int] = (1, 1, 1),
                 num_heads: int = 8,
                 norm_cfg: dict = dict(type='BN'),
                 level_block: Optional[dict] = None) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        strides = [int(s) for s in strides]
        if len(in_channels) != 3 or len(strides) != 3:
            raise ValueError(f'DETRISNeck takes 3 levels: in_channels and '
                             f'strides must have 3 entries, got '
                             f'{in_channels} and {strides}')
        if any(s < 1 for s in strides):
            raise ValueError(f'strides must be >= 1, got {strides}')
        self.in_channels = in_channels
        self.text_channels = int(text_channels)
        self.channels = int(channels)
        self.strides = strides
        act = dict(type='ReLU')
        self.projs = nn.ModuleList([
            ConvModule(in_channels[0], channels, strides[0],
                       stride=strides[0], norm_cfg=norm_cfg, act_cfg=act),
            ConvModule(in_channels[1], channels, strides[1],
                       stride=strides[1], norm_cfg=norm_cfg, act_cfg=act),
            ConvModule(in_channels[2], channels, strides[2],
                       stride=strides[2], conv_cfg=dict(type='deconv'),
                       norm_cfg=norm_cfg, act_cfg=act),
        ])
        self.level_blocks = nn.ModuleList()
        if level_block is not None:
            for _ in range(3):
                cfg = copy.deepcopy(dict(level_block))
                cfg.update(channels=channels, text_channels=text_channels)
                self.level_blocks.append(MODELS.build(cfg))
        self.text_proj = nn.Linear(text_channels, channels)
        self.gates = nn.ModuleList(
            [SentenceGate(channels, num_heads) for _ in range(3)])
        self.aggr = ConvModule(3 * channels, channels, 1,
                               norm_cfg=norm_cfg, act_cfg=act)
        self.coord = ConvModule(channels + 2, channels, 3, padding=1,
                                norm_cfg=norm_cfg, act_cfg=act)
        self.coord_out = ConvModule(channels, channels, 3, padding=1,
                                    norm_cfg=norm_cfg, act_cfg=act)

    def _check_inputs(self, feats: List[Tensor], text: TextFeatures) -> None:
        if len(feats) != 3:
            raise ValueError(f'DETRISNeck expects 3 levels, got {len(feats)}')
        b = text.sentence.shape[0]
        if text.sentence.dim() != 2 or \
                text.sentence.shape[1] != self.text_channels:
            raise ValueError(f'text.sentence must have shape (B, '
                             f'{self.text_channels}), got '
                             f'{tuple(text.sentence.shape)}')
        for i, (f, c) in enumerate(zip(feats, self.in_channels)):
            if f.dim() != 4 or f.shape[1] != c or f.shape[0] != b:
                raise ValueError(f'feats[{i}] must have shape ({b}, {c}, h,'
                                 f' w), got {tuple(f.shape)}')

    def forward(self, feats: Sequence[Tensor],
                text: TextFeatures) -> Tensor:
        """Args:
            feats: [v3 (B, C_3, h3, w3), v4 (B, C_4, h4, w4),
                v5 (B, C_5, h5, w5)].
            text: only ``sentence`` (B, C_t) is used (and by the level
                blocks' routers).

        Returns:
            Tensor: (B, channels, h, w), h = h4 / strides[1].
        """
        feats = list(feats)
        self._check_inputs(feats, text)
        levels = [proj(f) for proj, f in zip(self.projs, feats)]
        sizes = [tuple(p.shape[-2:]) for p in levels]
        if len(set(sizes)) != 1:
            raise ValueError(
                f'the projected levels must share one size, got {sizes} from '
                f'inputs {[tuple(f.shape[-2:]) for f in feats]} with strides '
                f'{self.strides}')
        if len(self.level_blocks):
            levels = [blk(p, text) for blk, p in zip(self.level_blocks,
                                                     levels)]
        s = self.text_proj(text.sentence)
        fused = [gate(p, s) for gate, p in zip(self.gates, levels)]
        q = self.aggr(torch.cat(fused, dim=1))
        return q + self.coord_out(self.coord(
            torch.cat([q, coord_maps(q)], dim=1)))


__all__ = [
    'RoutedExpertBlock', 'SentenceGate', 'DETRISNeck', 'PAPER_FUSION_ROUTER',
    'PAPER_FUSION_EXPERTS'
]
