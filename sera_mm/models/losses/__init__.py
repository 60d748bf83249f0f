"""Losses. SERA uses mmseg's ``CrossEntropyLoss(use_sigmoid=True)`` and
``DiceLoss`` (the head feeds Dice the foreground target; see
:class:`~sera_mm.models.heads.SERAHead`)."""

__all__ = []
