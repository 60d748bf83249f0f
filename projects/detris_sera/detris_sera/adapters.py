"""DETRIS's adapters (Huang et al., AAAI 2025) and the SERA paper's adapter
built on them (arXiv 2603.12538).

DETRIS adapts a frozen DINOv2 with a *dense aligner* beside the MLP of
selected blocks and a frozen CLIP text transformer with a *text adapter*
beside the MLP of selected layers. Both project the tokens to a small width
d, run dense (DenseNet-style) multi-scale convolution branches over the
grid (or the word sequence), and project back; the visual one also lets
the grid attend to the words. The block adds ``0.2 *`` the adapter's output
to its MLP's output (see :mod:`.backbone` and :mod:`.text_encoder`).

The SERA paper's adapter keeps this design and adds its routed experts to
the multi-scale grid: ``G_corr = G_rich + 0.25 w_s S(G) + 0.15 w_b B(G)``
(:class:`SERAPaperDenseAdapter`).

Written from DETRIS's paper and the facts of its public configuration
(widths, branch sizes, placement, scale); no code is taken from it.
"""
import copy
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor

from sera_mm.models.adapters.paper_adapter import scaled_expert_weights
from sera_mm.models.layers import check_text_features, check_token_layout
from sera_mm.models.routers.mixture import mix_experts
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS

#: DETRIS's conv blocks: conv (with bias) -> BatchNorm (eps 1e-3) -> ReLU.
DETRIS_NORM_2D = dict(type='BN', eps=1e-3)
DETRIS_NORM_1D = dict(type='BN1d', eps=1e-3)


def _kaiming_init(module: nn.Module) -> None:
    """DETRIS's initialisation of its adapters: Kaiming-normal (ReLU gain,
    fan-in) weights and zero biases for every conv and linear layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DenseMultiScaleBranches(nn.Module):
    """Three dense branches over a grid (``dims=2``) or a sequence
    (``dims=1``), as DETRIS's adapters, for an input of width d::

        b1 = CBR1x1(x)                        # d -> d/2
        b2 = CBR3x3(CBR1x1([x, b1]))          # 3d/2 -> d/16 -> d/4
        b3 = CBR5x5(CBR1x1([x, b1, b2]))      # 7d/4 -> d/16 -> d/4
        out = [b1, b2, b3] (+ x when ``residual``)      # d channels

    CBR: conv -> norm (``norm_cfg``; DETRIS: BatchNorm with eps 1e-3) ->
    ReLU. DETRIS's convs also carry a bias, which the following norm
    cancels (BatchNorm subtracts the mean; its shift takes the role); it is
    left out here (mmcv's ``bias='auto'``). Each later branch sees the input and every earlier
    branch (dense connections). d must be a multiple of 16.

    Args:
        channels: d.
        dims: 2 for (B, d, h, w) grids, 1 for (B, d, L) sequences.
        norm_cfg: mmcv norm config (BN / BN1d / SyncBN / GN ...).
        residual: add the input to the concatenated branches.
    """

    def __init__(self,
                 channels: int,
                 dims: int = 2,
                 norm_cfg: Optional[dict] = None,
                 residual: bool = True) -> None:
        super().__init__()
        if channels % 16 != 0:
            raise ValueError(f'channels must be a multiple of 16 (branch '
                             f'widths d/2, d/16, d/4), got {channels}')
        if dims not in (1, 2):
            raise ValueError(f'dims must be 1 or 2, got {dims}')
        if norm_cfg is None:
            norm_cfg = DETRIS_NORM_2D if dims == 2 else DETRIS_NORM_1D
        self.channels = channels
        self.dims = dims
        self.residual = bool(residual)
        d = channels
        c1, red, c3, c5 = d // 2, d // 16, d // 4, d // 4
        conv_cfg = dict(type='Conv2d' if dims == 2 else 'Conv1d')

        def cbr(cin: int, cout: int, k: int) -> ConvModule:
            return ConvModule(cin, cout, k, padding=k // 2,
                              conv_cfg=conv_cfg, norm_cfg=dict(norm_cfg),
                              act_cfg=dict(type='ReLU'))

        self.branch1 = cbr(d, c1, 1)
        self.branch2 = nn.Sequential(cbr(d + c1, red, 1), cbr(red, c3, 3))
        self.branch3 = nn.Sequential(cbr(d + c1 + c3, red, 1),
                                     cbr(red, c5, 5))

    def forward(self, x: Tensor) -> Tensor:
        """(B, d, h, w) or (B, d, L) -> same shape."""
        expected = 2 + self.dims
        if x.dim() != expected or x.shape[1] != self.channels:
            raise ValueError(
                f'{type(self).__name__} expects ({"B, d, h, w" if self.dims == 2 else "B, d, L"}) '  # noqa: E501
                f'with d={self.channels}, got {tuple(x.shape)}')
        b1 = self.branch1(x)
        b2 = self.branch2(torch.cat([x, b1], dim=1))
        b3 = self.branch3(torch.cat([x, b1, b2], dim=1))
        out = torch.cat([b1, b2, b3], dim=1)
        return out + x if self.residual else out


class GridWordAttention(nn.Module):
    """DETRIS's cross-modal attention of the adapter grid over the words:
    ``back(MHA(q=img(x), k=v=txt(words)))`` (the result replaces x; the
    adapter's own skip adds the pre-attention tokens back).

    Padded words get zero attention weight (``key_padding_mask``); a row
    whose words are all padding gets no update (zeros).

    Args:
        channels: d, width of the grid tokens.
        text_channels: C_t, width of the words.
        embed_dim: attention width (DETRIS: 128).
        num_heads: heads (DETRIS: 8).
        dropout: attention dropout (DETRIS: 0.1).
        use_pad_mask: mask padded words (DETRIS passes no mask).
    """

    def __init__(self,
                 channels: int,
                 text_channels: int,
                 embed_dim: int = 128,
                 num_heads: int = 8,
                 dropout: float = 0.1,
                 use_pad_mask: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f'embed_dim ({embed_dim}) must be divisible '
                             f'by num_heads ({num_heads})')
        self.use_pad_mask = bool(use_pad_mask)
        self.image_proj = nn.Linear(channels, embed_dim)
        self.text_proj = nn.Linear(text_channels, embed_dim)
        self.attn = nn.MultiheadAttention(
            embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.back_proj = nn.Linear(embed_dim, channels)

    def forward(self, x: Tensor, words: Tensor, pad_mask: Tensor) -> Tensor:
        """x (B, N, d), words (B, L, C_t), pad_mask (B, L) -> (B, N, d)."""
        q = self.image_proj(x)
        kv = self.text_proj(words)
        mask = None
        all_pad = None
        if self.use_pad_mask:
            mask = pad_mask.to(torch.bool)
            all_pad = mask.all(dim=1)
            if bool(all_pad.any()):
                mask = mask & ~all_pad[:, None]
            else:
                all_pad = None
        out = self.attn(q, kv, kv, key_padding_mask=mask,
                        need_weights=False)[0]
        if all_pad is not None:
            out = out.masked_fill(all_pad[:, None, None], 0.0)
        return self.back_proj(out)


@MODELS.register_module()
class DETRISVisualAdapter(nn.Module):
    """DETRIS's dense aligner for a vision transformer's (or CNN's) tokens.

    Data flow, tokens (B, N, C) with N = num_prefix + h * w::

        x0 = ReLU(fc1(tokens))                       # (B, N, d)
        G = patch part of x0 as a grid               # (B, d, h, w)
        G_rich = DenseMultiScaleBranches(G)          # (B, d, h, w), + G
        G' = refine(G, G_rich, text)                 # G_rich here; the SERA
                                                     #   paper adds experts
        q = GridWordAttention(G' tokens, words)      # (B, hw, d)
        out = [x0 prefix ; q] + x0                   # (B, N, d)
        delta = fc2(out)                             # (B, N, C)

    :meth:`delta` returns ``delta``; DETRIS adds ``0.2 * delta`` (computed
    on the block's ``norm2`` output) to the block's MLP output
    (:class:`~projects.detris_sera.detris_sera.DETRISDINOv2Backbone`).
    :meth:`forward` is the after-block form of the SERA-MM adapter
    interface, ``tokens + scale * delta(tokens)``, used where a backbone
    has no MLP to sit beside (a CNN's stages).

    Initialisation as DETRIS: Kaiming-normal weights, zero biases; the
    adapter is *not* an identity at initialisation (DETRIS's is not:
    ``0.2 * delta`` perturbs the frozen block from the first step).
    ``zero_init=True`` zeroes ``fc2`` instead, making it an exact identity.

    Args:
        in_channels: token width C (768 for ViT-B).
        text_channels: word width C_t (512 for CLIP ViT-B/16's text).
        hidden_channels: d (DETRIS: 128; a multiple of 16).
        num_heads: heads of the word attention (DETRIS: 8).
        attn_dropout: dropout of the word attention (DETRIS: 0.1).
        scale: factor of ``forward``'s after-block update (DETRIS: 0.2).
        norm_cfg: norm of the conv branches (DETRIS: BN, eps 1e-3; use
            SyncBN or the config's ``sync_bn='torch'`` under DDP).
        use_pad_mask: mask padded words in the attention (DETRIS does
            not; with CLIP's causal encoder the padded positions hold
            features of the end token).
        zero_init: zero ``fc2`` (identity at initialisation).
    """

    def __init__(self,
                 in_channels: int,
                 text_channels: int,
                 hidden_channels: int = 128,
                 num_heads: int = 8,
                 attn_dropout: float = 0.1,
                 scale: float = 0.2,
                 norm_cfg: Optional[dict] = None,
                 use_pad_mask: bool = True,
                 zero_init: bool = False) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.text_channels = int(text_channels)
        self.hidden_channels = d = int(hidden_channels)
        self.scale = float(scale)
        self.fc1 = nn.Linear(in_channels, d)
        self.branches = DenseMultiScaleBranches(
            d, dims=2, norm_cfg=norm_cfg or DETRIS_NORM_2D, residual=True)
        self.cross = GridWordAttention(d, text_channels, embed_dim=d,
                                       num_heads=num_heads,
                                       dropout=attn_dropout,
                                       use_pad_mask=use_pad_mask)
        self.fc2 = nn.Linear(d, in_channels)
        _kaiming_init(self)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def refine(self, grid: Tensor, rich: Tensor,
               text: TextFeatures) -> Tensor:
        """The grid the word attention sees: ``G_rich`` (DETRIS)."""
        return rich

    def delta(self, tokens: Tensor, hw: Sequence[int], num_prefix: int,
              text: TextFeatures) -> Tensor:
        """The adapter's output for tokens (B, N, C) -> (B, N, C)."""
        name = type(self).__name__
        h, w = check_token_layout(tokens, self.in_channels, hw, num_prefix,
                                  name)
        check_text_features(text, tokens.shape[0], self.text_channels, name,
                            sentence=False)
        b = tokens.shape[0]
        x0 = F.relu(self.fc1(tokens))  # (B, N, d)
        grid = x0[:, num_prefix:].transpose(1, 2).reshape(b, -1, h, w)
        grid = self.refine(grid, self.branches(grid), text)
        q = self.cross(grid.flatten(2).transpose(1, 2), text.words,
                       text.pad_mask)  # (B, hw, d)
        out = torch.cat([x0[:, :num_prefix], q], dim=1) + x0
        return self.fc2(out)

    def forward(self, tokens: Tensor, hw: Sequence[int], num_prefix: int,
                text: TextFeatures) -> Tensor:
        """After-block form: ``tokens + scale * delta(tokens)``."""
        return tokens + self.scale * self.delta(tokens, hw, num_prefix, text)


#: The SERA paper's adapter router: soft, from the grid only (GAP(G)).
PAPER_ADAPTER_ROUTER = dict(type='ExpertRouter', condition='visual')


@MODELS.register_module()
class SERAPaperDenseAdapter(DETRISVisualAdapter):
    """The SERA paper's SERA-Adapter: DETRIS's dense aligner whose
    multi-scale grid is corrected by two soft-routed experts::

        [w_s, w_b] = softmax(R(GAP(G)))               # (B, 2)
        G_corr = G_rich + a_s w_s S(G) + a_b w_b B(G)
        S(G) = GELU(DWConv3x3(G)) + 0.3 G             # spatial expert
        B(G) = ReLU(BN(G + 0.1 DWConv3x3(G)))         # boundary expert

    with ``a_s = 0.25``, ``a_b = 0.15`` (the paper's coefficients); G is the
    grid after ``fc1`` and G_rich DETRIS's dense branches. G_corr then goes
    through DETRIS's word attention and projection as before.

    Where the paper is silent (SERA-MM's choices, also listed in the
    project README): the router is an :class:`ExpertRouter` with
    ``condition='visual'`` (an MLP on GAP(G); hidden width d), soft (no
    top-k, no noise; the paper's "soft routing in the backbone"); the
    experts act on G (before the dense branches), not on G_rich; their
    BatchNorm follows ``norm_cfg``; DETRIS's layers keep DETRIS's Kaiming
    initialisation, the experts and the router their own (PyTorch's
    defaults; the router's last layer near zero, so its first weights are
    close to uniform).

    Args:
        router: router config (``in_channels``, ``text_channels`` and
            ``num_experts`` are filled in).
        spatial_weight, boundary_weight: a_s, a_b.
        spatial_beta, boundary_alpha: the experts' inner weights (0.3,
            0.1).
        **kwargs: :class:`DETRISVisualAdapter` arguments.

    Attributes:
        router: the expert router; ``router.expert_names`` =
            ['spatial', 'boundary'].
        experts: [S, B].
    """

    def __init__(self,
                 in_channels: int,
                 text_channels: int,
                 hidden_channels: int = 128,
                 router: dict = PAPER_ADAPTER_ROUTER,
                 spatial_weight: float = 0.25,
                 boundary_weight: float = 0.15,
                 spatial_beta: float = 0.3,
                 boundary_alpha: float = 0.1,
                 norm_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(in_channels, text_channels,
                         hidden_channels=hidden_channels, norm_cfg=norm_cfg,
                         **kwargs)
        d = self.hidden_channels
        bn = dict(norm_cfg or DETRIS_NORM_2D)
        bn.pop('eps', None)
        self.experts = nn.ModuleList([
            MODELS.build(dict(type='PaperAdapterSpatialExpert', channels=d,
                              beta=spatial_beta)),
            MODELS.build(dict(type='PaperAdapterBoundaryExpert', channels=d,
                              alpha=boundary_alpha, norm_cfg=bn)),
        ])
        self.expert_names: List[str] = ['spatial', 'boundary']
        cfg = copy.deepcopy(dict(router))
        cfg.update(in_channels=d, text_channels=self.text_channels,
                   num_experts=2)
        cfg.setdefault('hidden_channels', d)
        self.router = MODELS.build(cfg)
        self.router.expert_names = list(self.expert_names)
        self.expert_coefficients = (float(spatial_weight),
                                    float(boundary_weight))

    def extra_repr(self) -> str:
        a_s, a_b = self.expert_coefficients
        return f'spatial_weight={a_s:g}, boundary_weight={a_b:g}'

    def refine(self, grid: Tensor, rich: Tensor,
               text: TextFeatures) -> Tensor:
        """G_corr = G_rich + a_s w_s S(G) + a_b w_b B(G)."""
        scaled = scaled_expert_weights(self.router, self.expert_coefficients,
                                       grid, text.sentence)
        return rich + mix_experts(self.experts, grid, scaled)


@MODELS.register_module()
class DETRISTextAdapter(nn.Module):
    """DETRIS's text adapter, beside the MLP of a text transformer layer::

        x0 = ReLU(fc1(x))                              # (B, L, d)
        r = DenseMultiScaleBranches1d(x0[:, 1:])       # over the words
        out = [x0[:, :1] ; r] + x0                     # first token kept
        return fc2(out)                                # (B, L, C)

    The layer adds ``0.2 *`` this to its MLP output
    (:class:`~projects.detris_sera.detris_sera.DETRISTextEncoder`). The 1D
    branches use BatchNorm1d (eps 1e-3) over batch and positions, padded
    positions included, as DETRIS. Kaiming initialisation, zero biases.

    Args:
        in_channels: C, the text layer's width (512 for CLIP ViT-B/16).
        hidden_channels: d (DETRIS: 64; a multiple of 16).
        norm_cfg: norm of the 1D branches.
        zero_init: zero ``fc2`` (identity at initialisation).
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int = 64,
                 norm_cfg: Optional[dict] = None,
                 zero_init: bool = False) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.hidden_channels = d = int(hidden_channels)
        self.fc1 = nn.Linear(in_channels, d)
        self.branches = DenseMultiScaleBranches(
            d, dims=1, norm_cfg=norm_cfg or DETRIS_NORM_1D, residual=False)
        self.fc2 = nn.Linear(d, in_channels)
        _kaiming_init(self)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, L, C) -> (B, L, C), L >= 2."""
        if x.dim() != 3 or x.shape[2] != self.in_channels or x.shape[1] < 2:
            raise ValueError(f'{type(self).__name__}: x must have shape '
                             f'(B, L >= 2, {self.in_channels}), got '
                             f'{tuple(x.shape)}')
        x0 = F.relu(self.fc1(x))
        r = self.branches(x0[:, 1:].transpose(1, 2)).transpose(1, 2)
        out = torch.cat([x0[:, :1], r], dim=1) + x0
        return self.fc2(out)


__all__ = [
    'DenseMultiScaleBranches', 'GridWordAttention', 'DETRISVisualAdapter',
    'SERAPaperDenseAdapter', 'DETRISTextAdapter'
]
