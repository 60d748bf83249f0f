"""CRIS's text-modulated FPN neck (Wang et al., CVPR 2022), written for the
SERA-MM neck interface ``forward(feats, text) -> (B, C, h, w)``."""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmcv.cnn import build_norm_layer

from sera_mm.models.layers import DEFAULT_NORM_CFG, ConvNormAct, norm_cfg_for
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS


class CoordConvNormReLU(nn.Module):
    """CoordConv: concatenates normalised x / y maps in [-1, 1] to the input
    (2 extra channels), then a conv-norm-ReLU (mmcv's ``ConvModule``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels + 2, out_channels, kernel_size,
                                norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, h, w) -> (B, out_channels, h, w)."""
        b, _, h, w = x.shape
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
        coords = torch.stack([grid_x, grid_y])[None].expand(b, -1, -1, -1)
        return self.conv(torch.cat([x, coords], dim=1))


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bring a grid to ``size``: unchanged when equal, average pooling when
    it is an integer multiple of ``size`` (CRIS's stride-2 pooling of C3),
    bilinear interpolation otherwise."""
    h, w = x.shape[-2:]
    th, tw = int(size[0]), int(size[1])
    if (h, w) == (th, tw):
        return x
    if h >= th and w >= tw and h % th == 0 and w % tw == 0:
        return F.avg_pool2d(x, kernel_size=(h // th, w // tw))
    return F.interpolate(x, size=(th, tw), mode='bilinear',
                         align_corners=False)


@MODELS.register_module()
class CRISNeck(nn.Module):
    """CRIS's FPN neck with sentence modulation of the top level.

    Takes three levels ``feats = [C3, C4, C5]`` and returns one map at the
    size of C4 (``feats[1]``). With a ResNet, as in CRIS, these are strides
    8 / 16 / 32 (52 / 26 / 13 at 416) and the output has stride 16. With a
    ViT the three tapped blocks all have the patch stride (26 x 26 for
    CLIP ViT-B/16 at 416); they are used as they are, not resampled to a
    pyramid, and the output is again 26 x 26: the same size as CRIS's.
    Any sizes work: every level is brought to C4's size by
    :func:`resize_to` (equal: unchanged; larger: average pooling;
    smaller: bilinear).

    Data flow (``*`` is the element-wise product)::

        s  = act(LN(Linear(sentence)))              # (B, top_channels)
        f5 = ReLU(Norm(proj5(C5) * s))              # 1x1 conv; modulation
        f4 = cat4([proj4(C4), resize(f5)])          # 3x3 conv; top-down
        f3 = cat3([resize(proj3(C3)), f4])          # 3x3 conv; bottom-up
        q  = aggr([out3(f3), out4(f4), resize(out5(f5))])   # 3x3 convs, 1x1
        out = conv3x3(coordconv3x3(q))              # (B, channels, h4, w4)

    CRIS normalises the projected sentence with BatchNorm1d; here it is a
    LayerNorm so that a batch of one trains too. ``sentence_act`` picks the
    activation of the projected sentence: 'relu' (CRIS), 'tanh' or 'none'
    (plain linear modulation).

    Args:
        in_channels: channels of C3, C4, C5.
        text_channels: sentence feature width C_t.
        channels: output width (CRIS: 512); also the width of f4 and f3.
        top_channels: width of the modulated top level f5 (CRIS: 1024).
        low_channels: width of the projected C3 (CRIS: 256).
        sentence_act: 'relu', 'tanh' or 'none'.
        norm_cfg: mmcv norm config: dict(type='GN') (default, batch-size
            independent), dict(type='BN') (CRIS; SyncBN under distributed
            training), ...

    Attributes:
        channels: output width (read by the segmentor as the head's
            ``in_channels``).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 text_channels: int,
                 channels: int = 512,
                 top_channels: int = 1024,
                 low_channels: int = 256,
                 sentence_act: str = 'relu',
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if len(in_channels) != 3:
            raise ValueError(f'in_channels must list 3 levels (C3, C4, C5), '
                             f'got {in_channels}')
        if sentence_act not in ('relu', 'tanh', 'none'):
            raise ValueError(f"sentence_act must be 'relu', 'tanh' or "
                             f"'none', got {sentence_act!r}")
        self.in_channels = in_channels
        self.text_channels = int(text_channels)
        self.channels = int(channels)
        self.top_channels = int(top_channels)
        self.low_channels = int(low_channels)
        self.sentence_act = sentence_act
        c3, c4, c5 = in_channels

        # sentence -> per-channel modulation of the top level
        self.sentence_proj = nn.Sequential(
            nn.Linear(text_channels, top_channels),
            nn.LayerNorm(top_channels))
        # fusion 1: C5 x sentence
        self.proj5 = ConvNormAct(c5, top_channels, 1, norm_cfg=norm_cfg)
        self.norm5 = nn.Sequential(
            build_norm_layer(norm_cfg_for(norm_cfg, top_channels),
                             top_channels)[1], nn.ReLU(inplace=True))
        # fusion 2: C4 + upsampled f5 (top-down)
        self.proj4 = ConvNormAct(c4, channels, 3, norm_cfg=norm_cfg)
        self.cat4 = ConvNormAct(channels + top_channels, channels, 1, norm_cfg=norm_cfg)
        # fusion 3: pooled C3 + f4 (bottom-up)
        self.proj3 = ConvNormAct(c3, low_channels, 3, norm_cfg=norm_cfg)
        self.cat3 = ConvNormAct(low_channels + channels, channels, 1, norm_cfg=norm_cfg)
        # aggregation of the three fused levels
        self.out5 = ConvNormAct(top_channels, channels, 3, norm_cfg=norm_cfg)
        self.out4 = ConvNormAct(channels, channels, 3, norm_cfg=norm_cfg)
        self.out3 = ConvNormAct(channels, channels, 3, norm_cfg=norm_cfg)
        self.aggr = ConvNormAct(3 * channels, channels, 1, norm_cfg=norm_cfg)
        self.coord = nn.Sequential(
            CoordConvNormReLU(channels, channels, 3, norm_cfg=norm_cfg),
            ConvNormAct(channels, channels, 3, norm_cfg=norm_cfg))

    def _check_inputs(self, feats: List[Tensor], text: TextFeatures) -> None:
        if len(feats) != 3:
            raise ValueError(f'feats must hold 3 levels (C3, C4, C5), got '
                             f'{len(feats)}')
        sentence = text.sentence
        if sentence.dim() != 2 or sentence.shape[1] != self.text_channels:
            raise ValueError(
                f'text.sentence must have shape (B, {self.text_channels}), '
                f'got {tuple(sentence.shape)}')
        for i, (f, c) in enumerate(zip(feats, self.in_channels)):
            if f.dim() != 4 or f.shape[1] != c:
                raise ValueError(f'feats[{i}] must have shape (B, {c}, h, w)'
                                 f', got {tuple(f.shape)}')
            if f.shape[0] != sentence.shape[0]:
                raise ValueError(f'feats[{i}] batch ({f.shape[0]}) must equal'
                                 f' text batch ({sentence.shape[0]})')

    def _sentence(self, sentence: Tensor) -> Tensor:
        s = self.sentence_proj(sentence)
        if self.sentence_act == 'relu':
            s = F.relu(s)
        elif self.sentence_act == 'tanh':
            s = torch.tanh(s)
        return s

    def forward(self,
                feats: Sequence[Tensor],
                text: TextFeatures,
                out_size: Optional[Sequence[int]] = None) -> Tensor:
        """Fuse three levels with the sentence.

        Args:
            feats: [C3 (B, C_3, h3, w3), C4 (B, C_4, h4, w4),
                C5 (B, C_5, h5, w5)].
            text: encoded expressions; only ``sentence`` (B, C_t) is used.
            out_size: output size; default C4's (h4, w4).

        Returns:
            Tensor: (B, channels, h4, w4).
        """
        feats = list(feats)
        self._check_inputs(feats, text)
        v3, v4, v5 = feats
        size = tuple(out_size) if out_size is not None else v4.shape[-2:]
        s = self._sentence(text.sentence)[:, :, None, None]
        f5 = self.norm5(self.proj5(v5) * s)
        f4 = resize_to(self.proj4(v4), size)
        f4 = self.cat4(torch.cat([f4, resize_to(f5, size)], dim=1))
        f3 = resize_to(self.proj3(v3), size)
        f3 = self.cat3(torch.cat([f3, f4], dim=1))
        q = torch.cat([
            self.out3(f3),
            self.out4(f4),
            resize_to(self.out5(f5), size)
        ], dim=1)
        return self.coord(self.aggr(q))
