"""Dice loss that is defined, and useful, on empty ground truths."""
from typing import Optional

import torch
from mmseg.models.losses import DiceLoss
from mmseg.models.losses.utils import weight_reduce_loss
from torch import Tensor

from sera_mm.registry import MODELS


def smooth_dice_loss(prob: Tensor, target: Tensor, smooth: float = 1.0,
                     exponent: int = 2) -> Tensor:
    """Per-sample smoothed Dice loss.

    ``loss_i = 1 - (2 * sum(p * t) + s) / (sum(p ** e) + sum(t ** e) + s)``
    over the pixels of sample i (``s = smooth``, ``e = exponent``). With a
    positive ``s`` an empty target and an empty prediction give 0, and an
    empty target with predicted mass ``P = sum(p ** e)`` gives
    ``P / (P + s)``, whose gradient pushes the prediction down. When the
    denominator is 0 (``s = 0``, both empty) the loss is 0.

    Args:
        prob: probabilities (N, ...) in [0, 1].
        target: targets (N, ...) in [0, 1], same shape.
        smooth: ``s`` >= 0.
        exponent: ``e``: 2 is the V-Net form (mmseg's default
            ``naive_dice=False``), 1 the plain form.

    Returns:
        Tensor (N,).
    """
    if prob.shape != target.shape:
        raise ValueError(f'prob shape {tuple(prob.shape)} does not match '
                         f'target shape {tuple(target.shape)}')
    p = prob.flatten(1)
    t = target.flatten(1).to(p.dtype)
    inter = (p * t).sum(1)
    denom = p.pow(exponent).sum(1) + t.pow(exponent).sum(1) + smooth
    num = 2 * inter + smooth
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    dice = torch.where(denom > 0, num / safe, torch.ones_like(denom))
    return 1 - dice


@MODELS.register_module()
class SmoothDiceLoss(DiceLoss):
    """Dice loss with additive smoothing, for targets that may be empty.

    mmseg's ``DiceLoss`` (1.x) computes, per sample, ``1 - 2a / (b + c)``
    with ``b = sum(p^2) + eps`` and ``c = sum(t^2) + eps`` (V-Net form, the
    default). On an all-zero target ``a = 0``, so the loss is 1 whatever the
    prediction and its gradient is 0: an empty prediction (the right answer
    for a no-target expression) is penalised as much as a full one, and
    only BCE pushes the mask down. Its ``naive_dice=True`` form
    ``1 - (2a + eps) / (sum p + sum t + eps)`` is defined there but, with
    ``eps = 1e-3``, gives about 1 for any visible prediction.

    This loss uses :func:`smooth_dice_loss`: the same V-Net form (``exponent
    = 2``) with ``smooth`` added to numerator and denominator, so both-empty
    gives 0 and an empty target penalises the predicted mass. For non-empty
    targets it differs from mmseg's value only by the smoothing: with
    ``smooth = 0`` it equals mmseg's ``DiceLoss(eps=0)``, and with
    ``smooth = 1`` on masks of hundreds of pixels the difference is below
    ``1 / (b + c)``. A subclass of mmseg's ``DiceLoss``, so
    :class:`~sera_mm.models.heads.SERAHead` feeds it the foreground target
    (B, 1, H, W) as it does mmseg's.

    Args:
        smooth: additive smoothing ``s`` (>= 0; 1.0 as in most RIS code).
        exponent: 2 (V-Net, mmseg's default) or 1.
        use_sigmoid: apply a sigmoid to the predictions (logits).
        activate: apply the activation at all (False: ``pred`` holds
            probabilities).
        reduction: 'mean', 'sum' or 'none' over samples.
        loss_weight: weight of the loss.
        loss_name: key of the loss (``loss_dice``).
    """

    def __init__(self,
                 smooth: float = 1.0,
                 exponent: int = 2,
                 use_sigmoid: bool = True,
                 activate: bool = True,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_dice') -> None:
        if not smooth >= 0:
            raise ValueError(f'smooth must be >= 0, got {smooth}')
        if exponent not in (1, 2):
            raise ValueError(f'exponent must be 1 or 2, got {exponent}')
        super().__init__(use_sigmoid=use_sigmoid, activate=activate,
                         reduction=reduction, naive_dice=exponent == 1,
                         loss_weight=loss_weight, ignore_index=None,
                         eps=0.0, loss_name=loss_name)
        self.smooth = float(smooth)
        self.exponent = int(exponent)

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[int] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Args:
            pred: logits (or probabilities without ``activate``) (N, ...).
            target: foreground targets of the same shape, in [0, 1].
            weight: per-sample weights (N,).
            avg_factor: averaging factor for 'mean'.
            reduction_override: 'none', 'mean' or 'sum'.

        Returns:
            Tensor: the weighted, reduced loss.
        """
        if reduction_override not in (None, 'none', 'mean', 'sum'):
            raise ValueError("reduction_override must be None, 'none', "
                             f"'mean' or 'sum', got {reduction_override!r}")
        if pred.shape != target.shape:
            raise ValueError(
                f'SmoothDiceLoss needs a target of the prediction\'s shape '
                f'(the foreground mask), got {tuple(target.shape)} for '
                f'{tuple(pred.shape)}')
        reduction = reduction_override or self.reduction
        prob = pred
        if self.activate:
            prob = pred.sigmoid() if self.use_sigmoid or pred.shape[1] == 1 \
                else pred.softmax(dim=1)
        loss = smooth_dice_loss(prob, target, self.smooth, self.exponent)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction,
                                                     avg_factor)
