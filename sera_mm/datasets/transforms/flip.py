"""Horizontal flip that keeps the expression true."""
import re
from typing import Dict

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from sera_mm.registry import TRANSFORMS

#: Words whose meaning mirrors under a horizontal flip, including the
#: abbreviations RefCOCO's annotators used ("lft guy", "rt side").
MIRROR_WORDS: Dict[str, str] = {
    'left': 'right', 'right': 'left',
    'leftmost': 'rightmost', 'rightmost': 'leftmost',
    'lefter': 'righter', 'righter': 'lefter',
    'leftside': 'rightside', 'rightside': 'leftside',
    'lft': 'rt', 'rt': 'lft',
}
_PATTERN = re.compile(r'\b(' + '|'.join(MIRROR_WORDS) + r')\b',
                      re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """'the man on the left' -> 'the man on the right' (case kept; whole
    words only, so 'lft' -> 'rt' but 'art' and 'lefty' stay)."""

    def repl(match: 're.Match') -> str:
        word = match.group(0)
        new = MIRROR_WORDS[word.lower()]
        if word.isupper():
            return new.upper()
        if word[0].isupper():
            return new.capitalize()
        return new

    return _PATTERN.sub(repl, text)


@TRANSFORMS.register_module()
class ReferRandomFlip(BaseTransform):
    """Flip image and masks horizontally with probability ``prob`` and swap
    left/right words in ``text`` so the expression still holds.

    Off by default (``prob=0``): expressions can hold other mirror-dependent
    words ("the second from the left" is handled, "west" is not).
    """

    def __init__(self, prob: float = 0.0) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob

    def transform(self, results: dict) -> dict:
        flip = bool(np.random.rand() < self.prob)
        results['flip'] = flip
        results['flip_direction'] = 'horizontal' if flip else None
        if flip:
            results['img'] = mmcv.imflip(results['img'], 'horizontal')
            for key in results.get('seg_fields', []):
                results[key] = mmcv.imflip(results[key], 'horizontal')
            if 'text' in results:
                results['text'] = swap_left_right(results['text'])
        return results
