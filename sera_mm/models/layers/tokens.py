"""Input checks of the modules that adapt a block's token sequence with the
expression (SERA-Adapter, ETRIS's bridge, DETRIS's aligner): one place for
the token layout ``[prefix tokens ; h*w patch tokens]`` and for the text
features they read."""
from typing import Sequence, Tuple

from torch import Tensor

from sera_mm.structures import TextFeatures


def _prefix(owner: str) -> str:
    return f'{owner}: ' if owner else ''


def check_token_layout(tokens: Tensor, channels: int, hw: Sequence[int],
                       num_prefix: int, owner: str = '') -> Tuple[int, int]:
    """Check tokens (B, N, C) with N = num_prefix + h * w; return (h, w).

    Raises:
        ValueError: naming ``owner`` and the expected and actual shapes.
    """
    p = _prefix(owner)
    if tokens.dim() != 3 or tokens.shape[2] != channels:
        raise ValueError(f'{p}tokens must have shape (B, N, {channels}), got '
                         f'{tuple(tokens.shape)}')
    if len(hw) != 2:
        raise ValueError(f'{p}hw must be (h, w), got {hw!r}')
    h, w = int(hw[0]), int(hw[1])
    n = tokens.shape[1]
    if num_prefix < 0 or n != num_prefix + h * w:
        raise ValueError(
            f'{p}token count N={n} must equal num_prefix ({num_prefix}) + '
            f'h*w ({h}*{w}={h * w}) = {num_prefix + h * w}')
    return h, w


def check_text_features(text: TextFeatures, batch: int, text_channels: int,
                        owner: str = '', sentence: bool = True,
                        pad_mask: bool = True) -> None:
    """Check the words (B, L, C_t), and when asked the sentence (B, C_t) and
    the padding mask (B, L), against the batch and width a module expects.

    Raises:
        ValueError: naming ``owner`` and the expected and actual shapes.
    """
    p = _prefix(owner)
    words = text.words
    if words.dim() != 3 or words.shape[2] != text_channels:
        raise ValueError(f'{p}text channels must be {text_channels}: '
                         f'text.words must have shape (B, L, '
                         f'{text_channels}), got {tuple(words.shape)}')
    sent = text.sentence
    if words.shape[0] != batch or (sentence and sent.shape[0] != batch):
        got = f'words {words.shape[0]}' + (
            f', sentence {sent.shape[0]}' if sentence else '')
        raise ValueError(f'{p}text batch ({got}) must equal tokens batch '
                         f'({batch})')
    if sentence and (sent.dim() != 2 or sent.shape[1] != text_channels):
        raise ValueError(f'{p}text channels must be {text_channels}: '
                         f'text.sentence must have shape (B, '
                         f'{text_channels}), got {tuple(sent.shape)}')
    if pad_mask and tuple(text.pad_mask.shape) != tuple(words.shape[:2]):
        raise ValueError(f'{p}text.pad_mask must have shape '
                         f'{tuple(words.shape[:2])} (B, L), got '
                         f'{tuple(text.pad_mask.shape)}')


__all__ = ['check_token_layout', 'check_text_features']
