"""No-target decision for generalised referring segmentation: does the
expression name anything in the image?"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS


def no_target_labels(data_samples: Sequence) -> Tensor:
    """(B,) float labels: 1 for a no-target sample.

    Read from the metainfo ``no_target`` (what
    :class:`~sera_mm.datasets.GReferDataset` sets); a sample without it
    (e.g. from :class:`~sera_mm.datasets.ReferDataset`) is no-target iff its
    ``gt_sem_seg`` has no foreground pixel (``== 1``).

    Raises:
        ValueError: a sample has neither ``no_target`` nor ``gt_sem_seg``.
    """
    labels = []
    for i, sample in enumerate(data_samples):
        meta = sample.metainfo
        if meta.get('no_target') is not None:
            labels.append(float(bool(meta['no_target'])))
            continue
        gt = getattr(sample, 'gt_sem_seg', None) \
            if 'gt_sem_seg' in sample else None
        if gt is None:
            raise ValueError(
                f'sample {i} (sent_id={meta.get("sent_id")!r}): the '
                "no-target label needs the metainfo 'no_target' or a "
                'gt_sem_seg')
        labels.append(float(not bool((gt.data == 1).any())))
    return torch.tensor(labels)


@MODELS.register_module()
class NoTargetHead(BaseModule):
    """One logit per sample: "this expression names nothing in the image".

    Data flow for a fused map ``x`` (B, C_f, h, w), the sentence feature
    ``s`` (B, C_t) and (optionally) the mask head's logits ``m``
    (B, 1, H', W')::

        p    = sigmoid(m) resized to (h, w)     # (B, 1, h, w); detached
        avg  = sum(p * x) / sum(p)              # mask-weighted mean (B, C_f)
        mx   = max over h, w of x               # (B, C_f)
        z    = [s ; avg ; mx (; mean p, max p)] # (B, C_t + 2 C_f (+ 2))
        logit = Linear(ReLU(Linear(LN(z))))     # (B,)

    The masked average pools the features where the mask head answers, the
    max pool the strongest response anywhere; ``mask_stats`` adds the mean
    and max of ``p`` (how much, and how surely, the mask head found
    something). Without mask logits ``p`` is uniform (a plain average).

    Trained with BCE against the ``no_target`` flag
    (:func:`no_target_labels`), loss key ``loss_no_target`` times
    ``loss_weight``; ``acc_no_target`` (percent, at ``threshold``) is logged.
    At prediction :class:`~sera_mm.models.segmentors.SERASegmentor` empties
    the mask of samples with ``sigmoid(logit) > threshold``.

    Args:
        in_channels: channels C_f of the fused map.
        text_channels: width C_t of the sentence feature.
        hidden_channels: width of the MLP.
        dropout: dropout before the last layer.
        mask_stats: append the mean and max mask probability.
        detach_mask: stop the gradient of this head's loss at the mask
            logits (the mask head is trained by its own losses only).
        threshold: probability above which a sample is predicted
            no-target.
        loss_weight: weight of ``loss_no_target``.
        pos_weight: BCE weight of the positive (no-target) class, for
            datasets where no-target samples are rare (None: 1).
        init_cfg: initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 text_channels: int,
                 hidden_channels: int = 256,
                 dropout: float = 0.1,
                 mask_stats: bool = True,
                 detach_mask: bool = True,
                 threshold: float = 0.5,
                 loss_weight: float = 1.0,
                 pos_weight: Optional[float] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f'threshold must be in [0, 1], got {threshold}')
        if not loss_weight >= 0:
            raise ValueError(f'loss_weight must be >= 0, got {loss_weight}')
        if pos_weight is not None and not pos_weight > 0:
            raise ValueError(f'pos_weight must be > 0, got {pos_weight}')
        self.in_channels = int(in_channels)
        self.text_channels = int(text_channels)
        self.mask_stats = bool(mask_stats)
        self.detach_mask = bool(detach_mask)
        self.threshold = float(threshold)
        self.loss_weight = float(loss_weight)
        self.pos_weight = None if pos_weight is None else float(pos_weight)
        in_dim = self.text_channels + 2 * self.in_channels + (
            2 if self.mask_stats else 0)
        self.mlp = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden_channels),
            nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden_channels, 1))

    def pooled(self, fused: Tensor, sentence: Tensor,
               mask_logits: Optional[Tensor] = None) -> Tensor:
        """The MLP's input (B, C_t + 2 C_f (+ 2)); see the class doc."""
        if fused.dim() != 4 or fused.shape[1] != self.in_channels:
            raise ValueError(f'fused map must have shape (B, '
                             f'{self.in_channels}, h, w), got '
                             f'{tuple(fused.shape)}')
        b, _, h, w = fused.shape
        if tuple(sentence.shape) != (b, self.text_channels):
            raise ValueError(f'sentence must have shape ({b}, '
                             f'{self.text_channels}), got '
                             f'{tuple(sentence.shape)}')
        if mask_logits is None:
            prob = fused.new_ones(b, 1, h, w)
        else:
            if mask_logits.dim() != 4 or mask_logits.shape[:2] != (b, 1):
                raise ValueError(f'mask logits must have shape ({b}, 1, H, '
                                 f'W), got {tuple(mask_logits.shape)}')
            logits = mask_logits.detach() if self.detach_mask \
                else mask_logits
            prob = F.interpolate(logits.float(), size=(h, w),
                                 mode='bilinear',
                                 align_corners=False).sigmoid()
            prob = prob.to(fused.dtype)
        avg = (fused * prob).sum((2, 3)) / prob.sum((2, 3)).clamp(min=1e-6)
        mx = fused.amax(dim=(2, 3))
        parts = [sentence.to(fused.dtype), avg, mx]
        if self.mask_stats:
            parts += [prob.mean((2, 3)), prob.amax(dim=(2, 3))]
        return torch.cat(parts, dim=1)

    def forward(self, fused: Tensor, text: TextFeatures,
                mask_logits: Optional[Tensor] = None) -> Tensor:
        """Args:
            fused: (B, C_f, h, w).
            text: TextFeatures (only ``sentence`` (B, C_t) is read).
            mask_logits: (B, 1, H', W') logits of the mask head, or None.

        Returns:
            Tensor: no-target logits (B,).
        """
        return self.mlp(self.pooled(fused, text.sentence,
                                    mask_logits)).squeeze(1)

    def loss(self, fused: Tensor, text: TextFeatures,
             mask_logits: Optional[Tensor],
             data_samples: Sequence) -> Dict[str, Tensor]:
        """``loss_no_target`` (weighted BCE) and ``acc_no_target``."""
        logits = self(fused, text, mask_logits)
        labels = no_target_labels(data_samples).to(logits)
        pos_weight = None if self.pos_weight is None else \
            logits.new_tensor(self.pos_weight)
        loss = F.binary_cross_entropy_with_logits(
            logits, labels, pos_weight=pos_weight)
        with torch.no_grad():
            pred = logits.sigmoid() > self.threshold
            acc = (pred == labels.bool()).float().mean() * 100.0
        return dict(loss_no_target=self.loss_weight * loss,
                    acc_no_target=acc)

    def predict(self, fused: Tensor, text: TextFeatures,
                mask_logits: Optional[Tensor] = None) -> Tensor:
        """No-target probabilities (B,)."""
        return self(fused, text, mask_logits).sigmoid()
