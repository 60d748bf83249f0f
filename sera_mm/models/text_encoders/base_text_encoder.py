"""Shared input handling of the text encoders: checking raw expressions,
tokenising them to a fixed length and warning once about truncation."""
import warnings
from typing import Any, Dict, List, Sequence

import torch
import torch.nn as nn


def check_texts(texts: Sequence[str]) -> List[str]:
    """Validate a batch of referring expressions.

    Raises:
        ValueError: ``texts`` is a bare string or empty, or an item is not a
            str or is blank (the message names the index).
    """
    if isinstance(texts, (str, bytes)) or not isinstance(
            texts, (list, tuple)):
        raise ValueError(f'texts must be a list of strings, got '
                         f'{type(texts).__name__}')
    if len(texts) == 0:
        raise ValueError('texts is empty: expected at least one expression')
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f'texts[{i}] must be a str, got '
                             f'{type(text).__name__}')
        if not text.strip():
            raise ValueError(f'texts[{i}] is empty or blank: {text!r}')
    return list(texts)


class BaseTextEncoder(nn.Module):
    """Tokenises raw strings with ``self.tokenizer`` to ``max_length``.

    Subclasses set ``self.tokenizer``, ``self.max_length``, ``self.embed_dim``
    and implement ``forward(texts) -> TextFeatures``.
    """

    tokenizer: Any
    max_length: int
    embed_dim: int

    def _init_text_state(self, max_length: int) -> None:
        if not isinstance(max_length, int) or max_length < 3:
            raise ValueError(f'max_length must be an int >= 3 (room for the '
                             f'special tokens), got {max_length!r}')
        self.max_length = max_length
        self._warned_truncation = False

    def tokenize(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Tokenise to ``(B, max_length)`` ``input_ids``/``attention_mask``.

        Expressions longer than ``max_length`` tokens (special tokens
        included) are truncated, with one warning per encoder instance.
        """
        texts = check_texts(texts)
        lengths = [
            len(ids)
            for ids in self.tokenizer(texts, add_special_tokens=True)
            ['input_ids']
        ]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_length]
        if too_long and not self._warned_truncation:
            self._warned_truncation = True
            i = too_long[0]
            warnings.warn(
                f'{type(self).__name__}: {len(too_long)} expression(s) longer '
                f'than max_length={self.max_length} tokens are truncated '
                f'(e.g. texts[{i}] has {lengths[i]} tokens: {texts[i]!r}); '
                f'this warning is shown once', UserWarning, stacklevel=3)
        enc = self.tokenizer(texts, padding='max_length', truncation=True,
                             max_length=self.max_length, return_tensors='pt')
        device = next(self.parameters()).device
        return {k: v.to(device) for k, v in enc.items()}
