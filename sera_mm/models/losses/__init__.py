"""Losses. SERA uses mmseg's ``CrossEntropyLoss(use_sigmoid=True)`` and
``DiceLoss`` (the head feeds Dice the foreground target; see
:class:`~sera_mm.models.heads.SERAHead`); :class:`SmoothDiceLoss` is the
Dice loss for datasets with empty targets (generalised RIS)."""
from .dice_loss import SmoothDiceLoss, smooth_dice_loss

__all__ = ['SmoothDiceLoss', 'smooth_dice_loss']
