"""SERA decode head: vision-language decoder, upsampling projector and a
convolution whose kernel is generated from the sentence feature."""
import copy
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import DiceLoss
from mmseg.models.utils import resize
from mmseg.utils import ConfigType, OptConfigType, SampleList
from torch import Tensor

from sera_mm.models.layers import DEFAULT_NORM_CFG, ConvNormAct
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS
from .vl_decoder import VLTransformerDecoder


def _up_block(in_channels: int, out_channels: int, norm_cfg: Optional[dict],
              align_corners: bool) -> nn.Sequential:
    """x2 bilinear upsampling then a 3x3 conv-norm-ReLU."""
    return nn.Sequential(
        nn.Upsample(
            scale_factor=2, mode='bilinear', align_corners=align_corners),
        ConvNormAct(in_channels, out_channels, 3, norm_cfg=norm_cfg))


@MODELS.register_module()
class SERAHead(BaseDecodeHead):
    """Text-conditioned binary mask head.

    Data flow for ``inputs = (fused (B, C_f, h, w), text: TextFeatures)``::

        x = 1x1 conv(fused)                      # (B, channels, h, w)
        w = LN(Linear(text.words))               # (B, L, channels)
        x = VLTransformerDecoder(x, w, pad_mask) # (B, channels, h, w)
        x = num_upsample x [Upsample x2, conv3x3-norm-ReLU to P channels]
                                                 # (B, P, h*2^n, w*2^n)
        x = 1x1 conv(x)                          # (B, P, H', W')
        kernel, bias = Linear(sentence)          # per-sample (P, k, k), (1,)
        logits = conv(x, kernel) + bias          # (B, 1, H', W') (grouped
                                                 # conv, one group/sample)

    With the default ``num_upsample=2`` the logits are 4x the input grid:
    1/4 of the padded input for a stride-16 grid (CLIP ViT-B/16 at 416:
    26 -> 104), 1/3.5 for DINOv2-B/14 (448: 32 -> 128) and 1/2 for a
    stride-8 CNN level. Training resizes the logits to the label size;
    prediction resizes them to ``pad_shape`` (mmseg's ``predict_by_feat``).

    Losses (``loss_decode``): mmseg's sigmoid ``CrossEntropyLoss`` receives
    (B, 1, H, W) logits and (B, H, W) labels, which it supports. mmseg's
    ``DiceLoss`` would one-hot encode (B, H, W) labels against one channel
    and so score the *background*; this head therefore hands Dice losses the
    foreground target (B, 1, H, W) instead. ``acc_seg`` is the pixel accuracy
    (percent) of ``sigmoid(logits) > threshold`` (mmseg's top-1 accuracy is
    meaningless for one channel). Pixels equal to ``ignore_index`` are left
    out of every term.

    Args:
        in_channels: channels C_f of the fused map.
        channels: decoder width (a multiple of 4 and of ``num_heads``).
        text_channels: width C_t of the text features.
        num_layers: decoder layers.
        num_heads: attention heads.
        ffn_channels: FFN width (default ``4 * channels``).
        dropout: decoder dropout.
        norm_first: pre-norm (True) or post-norm decoder layers.
        proj_channels: width P of the projector (default ``channels // 2``).
        num_upsample: number of x2 upsampling blocks.
        kernel_size: size of the sentence-generated kernel (odd).
        out_channels: must be 1 (binary mask).
        threshold: probability threshold of the prediction.
        norm_cfg: mmcv norm config of the input projection and the
            upsampling blocks: dict(type='GN') (default), dict(type='BN'),
            dict(type='SyncBN') (the launchers turn it into BN without
            CUDA), ...; None for none.
        loss_decode: loss configs (see above).
        no_target_head: optional no-target branch for generalised RIS
            (e.g. ``dict(type='NoTargetHead')``, built with this head's
            ``in_channels`` and ``text_channels`` unless set); see
            :meth:`loss` and :meth:`predict`.
        **kwargs: other :class:`BaseDecodeHead` arguments (``ignore_index``,
            ``align_corners``, ``init_cfg``, ...).
    """

    def __init__(self,
                 in_channels: int,
                 channels: int,
                 text_channels: int,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 ffn_channels: Optional[int] = None,
                 dropout: float = 0.1,
                 norm_first: bool = True,
                 proj_channels: Optional[int] = None,
                 num_upsample: int = 2,
                 kernel_size: int = 3,
                 out_channels: int = 1,
                 threshold: float = 0.35,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG,
                 loss_decode: Union[dict, Sequence[dict]] = (
                     dict(
                         type='CrossEntropyLoss',
                         use_sigmoid=True,
                         loss_weight=1.0),
                     dict(type='DiceLoss', use_sigmoid=True,
                          loss_weight=1.0)),
                 no_target_head: OptConfigType = None,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if out_channels != 1:
            raise ValueError(f'SERAHead predicts one binary mask: out_channels'
                             f' must be 1, got {out_channels}')
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f'kernel_size must be a positive odd number, got '
                f'{kernel_size}')
        if num_upsample < 0:
            raise ValueError(
                f'num_upsample must be >= 0, got {num_upsample}')
        for key in ('input_transform', 'in_index', 'num_classes'):
            kwargs.pop(key, None)
        if isinstance(loss_decode, tuple):
            loss_decode = list(loss_decode)
        super().__init__(
            in_channels,
            channels,
            num_classes=2,
            out_channels=1,
            threshold=threshold,
            in_index=0,
            input_transform=None,
            norm_cfg=norm_cfg,
            loss_decode=copy.deepcopy(loss_decode),
            init_cfg=init_cfg,
            **kwargs)
        # The generic classifier of BaseDecodeHead is replaced by the
        # sentence-generated kernel; drop it so no parameter goes unused.
        del self.conv_seg
        self.dropout = None
        self.text_channels = text_channels
        self.num_layers = num_layers
        self.num_upsample = num_upsample
        self.kernel_size = kernel_size
        ffn_channels = ffn_channels or 4 * channels
        proj_channels = proj_channels or max(channels // 2, 1)
        self.proj_channels = proj_channels

        self.input_proj = ConvNormAct(in_channels, channels, 1,
                                      norm_cfg=norm_cfg)
        self.word_proj = nn.Sequential(
            nn.Linear(text_channels, channels), nn.LayerNorm(channels))
        self.decoder = VLTransformerDecoder(
            channels,
            num_layers=num_layers,
            num_heads=num_heads,
            ffn_channels=ffn_channels,
            dropout=dropout,
            norm_first=norm_first)
        ups = []
        c = channels
        # Every upsampling block outputs the projector width P: the blocks
        # at 2x and 4x the grid dominate the head's cost, so they run at
        # P (= channels / 2 by default) channels, not ``channels``.
        for _ in range(num_upsample):
            ups.append(
                _up_block(c, proj_channels, norm_cfg, self.align_corners))
            c = proj_channels
        self.upsample = nn.Sequential(*ups)
        self.proj_conv = nn.Conv2d(c, proj_channels, 1)
        self.kernel_gen = nn.Linear(
            text_channels, proj_channels * kernel_size * kernel_size + 1)
        self._init_kernel_gen()
        self.no_target_head = None
        if no_target_head is not None:
            no_target_head = copy.deepcopy(dict(no_target_head))
            no_target_head.setdefault('in_channels', in_channels)
            no_target_head.setdefault('text_channels', text_channels)
            self.no_target_head = MODELS.build(no_target_head)

    def _init_kernel_gen(self) -> None:
        fan_in = self.proj_channels * self.kernel_size**2
        nn.init.normal_(self.kernel_gen.weight, std=1.0 / math.sqrt(
            fan_in * self.text_channels))
        nn.init.zeros_(self.kernel_gen.bias)

    # ------------------------------------------------------------------ #
    def _check_inputs(self, inputs) -> Tuple[Tensor, TextFeatures]:
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError('SERAHead expects inputs = (fused map, '
                             f'TextFeatures), got {type(inputs).__name__}'
                             f' of length {len(inputs) if hasattr(inputs, "__len__") else "?"}')  # noqa: E501
        fused, text = inputs
        if not isinstance(text, TextFeatures):
            if isinstance(text, (tuple, list)) and len(text) == 3:
                text = TextFeatures(*text)
            else:
                raise ValueError('inputs[1] must be TextFeatures, got '
                                 f'{type(text).__name__}')
        if not isinstance(fused, Tensor) or fused.dim() != 4 or \
                fused.shape[1] != self.in_channels:
            shape = tuple(fused.shape) if isinstance(fused, Tensor) else fused
            raise ValueError(f'fused map must have shape (B, '
                             f'{self.in_channels}, h, w), got {shape}')
        b = fused.shape[0]
        if text.words.dim() != 3 or text.words.shape[0] != b or \
                text.words.shape[2] != self.text_channels:
            raise ValueError(f'text.words must have shape ({b}, L, '
                             f'{self.text_channels}), got '
                             f'{tuple(text.words.shape)}')
        if tuple(text.pad_mask.shape) != tuple(text.words.shape[:2]):
            raise ValueError(f'text.pad_mask must have shape '
                             f'{tuple(text.words.shape[:2])}, got '
                             f'{tuple(text.pad_mask.shape)}')
        if tuple(text.sentence.shape) != (b, self.text_channels):
            raise ValueError(f'text.sentence must have shape ({b}, '
                             f'{self.text_channels}), got '
                             f'{tuple(text.sentence.shape)}')
        return fused, text

    def dynamic_conv(self, x: Tensor, sentence: Tensor) -> Tensor:
        """Convolve every sample with its own sentence-generated kernel
        (k x k, P channels to 1, zero padding k // 2, plus a bias).

        Computed as one batched matrix product and k*k shifted sums: the
        taps' channel sums ``t[b, j] = sum_p w[b, p, j] x[b, p]`` (B, H, W,
        k*k), then ``out[b, y, x] = sum_j t[b, y + dy_j - k//2, x + dx_j -
        k//2, j]`` (zero outside the grid). These are a grouped
        convolution's sums in another order, but without a batch-sized
        ``groups``, so an exported graph takes any batch, and with a cheap
        backward pass (on CPUs the grouped convolution's backward took
        about 20 ms per batch-32 training step at 40x40).

        Args:
            x: (B, P, H, W).
            sentence: (B, C_t).

        Returns:
            Tensor: logits (B, 1, H, W).
        """
        b, p, h, w = x.shape
        k = self.kernel_size
        params = self.kernel_gen(sentence)  # (B, P*k*k + 1)
        weight = params[:, :-1].reshape(b, p, k * k)  # taps (i, j) row-major
        bias = params[:, -1].reshape(b, 1, 1)
        # (B, H*W, P) @ (B, P, k*k); a channels-last x is read in place
        taps = torch.bmm(x.permute(0, 2, 3, 1).reshape(b, h * w, p), weight)
        taps = taps.reshape(b, h, w, k * k)
        if k == 1:
            return (taps[..., 0] + bias).unsqueeze(1)
        r = k // 2
        taps = F.pad(taps, (0, 0, r, r, r, r))  # (B, H + 2r, W + 2r, k*k)
        out = bias
        for j in range(k * k):
            i, jj = divmod(j, k)
            out = out + taps[:, i:i + h, jj:jj + w, j]
        return out.unsqueeze(1)

    def forward(self, inputs: Tuple[Tensor, TextFeatures]) -> Tensor:
        """Args:
            inputs: (fused (B, C_f, h, w), text: TextFeatures with words
                (B, L, C_t), pad_mask (B, L), sentence (B, C_t)).

        Returns:
            Tensor: logits (B, 1, h * 2**num_upsample, w * 2**num_upsample).
        """
        fused, text = self._check_inputs(inputs)
        x = self.input_proj(fused)
        words = self.word_proj(text.words)
        x = self.decoder(x, words, text.pad_mask)
        x = self.upsample(x)
        x = self.proj_conv(x)
        return self.dynamic_conv(x, text.sentence)

    # ------------------------------------------------------------------ #
    def loss(self, inputs: Tuple[Tensor, TextFeatures],
             batch_data_samples: SampleList, train_cfg: ConfigType) -> dict:
        """Losses of one forward: :meth:`loss_by_feat` of the logits, plus
        the no-target branch's ``loss_no_target`` / ``acc_no_target`` (from
        the fused map, the sentence and these logits) when it exists.

        Args:
            inputs: (fused (B, C_f, h, w), TextFeatures).
            batch_data_samples: samples with ``gt_sem_seg`` (and the
                metainfo ``no_target`` for the branch, see
                :func:`~sera_mm.models.heads.no_target_labels`).
            train_cfg: unused (mmseg's head contract).
        """
        seg_logits = self.forward(inputs)
        losses = self.loss_by_feat(seg_logits, batch_data_samples)
        if self.no_target_head is not None:
            fused, text = self._check_inputs(inputs)
            losses.update(self.no_target_head.loss(
                fused, text, seg_logits, batch_data_samples))
        return losses

    def predict(self, inputs: Tuple[Tensor, TextFeatures],
                batch_img_metas: List[dict], test_cfg: ConfigType) -> Tensor:
        """Logits (B, 1, H_pad, W_pad) at the padded input size.

        With the no-target branch, every sample's probability is written
        into its meta dict as ``no_target_score`` (the segmentor copies it
        into the sample's metainfo), and a sample whose score is above the
        branch's ``threshold`` gets constant logits of -1e4: its predicted
        mask is empty. The mask logits before that decision are
        ``self.forward(inputs)``.
        """
        raw = self.forward(inputs)
        seg_logits = self.predict_by_feat(raw, batch_img_metas)
        if self.no_target_head is None:
            return seg_logits
        fused, text = self._check_inputs(inputs)
        scores = self.no_target_head.predict(fused, text, raw)
        empty = scores > self.no_target_head.threshold  # (B,)
        for meta, score in zip(batch_img_metas,
                               scores.detach().float().cpu().tolist()):
            meta['no_target_score'] = float(score)
        return torch.where(empty[:, None, None, None],
                           seg_logits.new_tensor(-1e4), seg_logits)

    def loss_by_feat(self, seg_logits: Tensor,
                     batch_data_samples: SampleList) -> dict:
        """Sigmoid losses against the binary masks (see the class doc).

        Args:
            seg_logits: (B, 1, h', w') head logits.
            batch_data_samples: samples with ``gt_sem_seg.data`` (1, H, W)
                in {0, 1} (``ignore_index`` allowed) at the padded size.

        Returns:
            dict: one entry per loss name plus ``acc_seg``.
        """
        seg_label = self._stack_batch_gt(batch_data_samples)  # (B,1,H,W)
        seg_logits = resize(
            input=seg_logits,
            size=seg_label.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners)
        label = seg_label.squeeze(1).long()  # (B, H, W)
        if self.ignore_index is not None:
            valid = label != self.ignore_index
        else:
            valid = torch.ones_like(label, dtype=torch.bool)
        # one fused reduction (boolean indexing would run nonzero twice)
        bad = valid & ((label < 0) | (label > 1))
        if bad.any():
            raise ValueError('SERAHead needs binary masks with values in '
                             '{0, 1} (or ignore_index), got values '
                             f'{torch.unique(label[valid]).tolist()}')
        fg_target = ((label == 1) & valid).unsqueeze(1).float()  # (B,1,H,W)
        # Ignored pixels are pushed to probability 0 for Dice, where the
        # foreground target is 0 too, so they add nothing.
        dice_logits = torch.where(valid.unsqueeze(1), seg_logits,
                                  seg_logits.new_tensor(-1e4))

        losses_decode = self.loss_decode if isinstance(
            self.loss_decode, nn.ModuleList) else [self.loss_decode]
        loss = dict()
        for loss_decode in losses_decode:
            if isinstance(loss_decode, DiceLoss):
                value = loss_decode(dice_logits, fg_target)
            else:
                value = loss_decode(
                    seg_logits,
                    label,
                    weight=None,
                    ignore_index=self.ignore_index)
            name = loss_decode.loss_name
            loss[name] = loss[name] + value if name in loss else value
        with torch.no_grad():
            pred = seg_logits.squeeze(1).sigmoid() > self.threshold
            correct = (pred == (label == 1)) & valid
            loss['acc_seg'] = correct.sum().float().mul(100.0) / valid.sum(
            ).clamp(min=1)
        return loss

    def predict_by_feat(self, seg_logits: Tensor,
                        batch_img_metas: List[dict]) -> Tensor:
        """Resize logits (B, 1, h', w') to the padded input size, as mmseg
        does (``pad_shape``, else ``img_shape``)."""
        return super().predict_by_feat(seg_logits, batch_img_metas)
