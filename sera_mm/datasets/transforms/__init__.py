"""Pipeline transforms for referring segmentation."""
from .flip import ReferRandomFlip, swap_left_right
from .formatting import REFER_META_KEYS, PackReferInputs
from .letterbox import Letterbox, undo_letterbox
from .loading import LoadReferImage, LoadReferMask, decode_segmentation

__all__ = [
    'LoadReferImage', 'LoadReferMask', 'decode_segmentation', 'Letterbox',
    'undo_letterbox', 'ReferRandomFlip', 'swap_left_right',
    'PackReferInputs', 'REFER_META_KEYS'
]
