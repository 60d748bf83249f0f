"""Shared input handling of the text encoders: checking raw expressions,
tokenising them to a fixed length and warning once about truncation."""
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from sera_mm.structures import TextFeatures

#: Default memory bound of the frozen-feature cache (bytes, CPU memory).
DEFAULT_CACHE_MAX_BYTES = 256 * 1024 * 1024


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
    and implement ``encode(texts) -> TextFeatures`` and ``encode_ids(
    input_ids, attention_mask) -> TextFeatures`` (the same from the output
    of :meth:`tokenize`: what a traced / exported model runs); ``forward``
    checks the texts and, for a fully frozen encoder with ``cache_size >
    0``, serves repeated expressions from a feature cache.

    Feature cache: when no parameter of the encoder trains (``trainable=
    'none'``), its output for a string never changes, so ``forward`` keeps
    the features of up to ``cache_size`` recent expressions (least recently
    used dropped first), and at most ``cache_max_bytes`` bytes of them
    (default 256 MiB; CLIP-B at L=17 is about 35 KB per expression). The
    cache lives in CPU memory whatever the model's device, and the rows of a
    batch are copied to the model's device when served. Cached features are
    computed in eval mode (no dropout) without gradients. Loading a state
    dict clears the cache. With trainable parameters the cache is bypassed.
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
        self.cache_size = 0
        self.cache_max_bytes = DEFAULT_CACHE_MAX_BYTES
        self._cache: 'OrderedDict[str, Tuple[torch.Tensor, ...]]' = \
            OrderedDict()
        self._cache_bytes = 0
        self._register_load_state_dict_pre_hook(self._clear_cache_hook)

    def set_cache_size(self, cache_size: int,
                       max_bytes: Optional[int] = None) -> None:
        """Enable (``> 0``) or disable (``0``) the frozen-feature cache;
        ``max_bytes`` bounds its memory (default: keep the current bound)."""
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f'cache_size must be an int >= 0, got '
                             f'{cache_size!r}')
        if max_bytes is not None:
            if not isinstance(max_bytes, int) or max_bytes < 0:
                raise ValueError(f'max_bytes must be an int >= 0, got '
                                 f'{max_bytes!r}')
            self.cache_max_bytes = max_bytes
        self.cache_size = cache_size
        self._clear_cache_hook()

    def _clear_cache_hook(self, *args, **kwargs) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the feature cache (CPU memory)."""
        return self._cache_bytes

    def is_frozen(self) -> bool:
        """True when no parameter of the encoder requires gradients."""
        return not any(p.requires_grad for p in self.parameters())

    @torch.compiler.disable
    def forward(self, texts: Sequence[str]):
        """Encode a batch of expressions.

        Runs eagerly under ``torch.compile``: strings, the tokenizer and the
        feature cache are Python work that dynamo would otherwise trace
        and guard on (a recompile for every new batch of token ids).

        Args:
            texts: B raw strings (non-empty).

        Returns:
            TextFeatures with words (B, L, C_t), pad_mask (B, L) bool (True
            = padding), sentence (B, C_t); L = ``max_length``.
        """
        texts = check_texts(texts)
        if self.cache_size <= 0 or not self.is_frozen():
            return self.encode(texts)
        missing = list(OrderedDict.fromkeys(
            t for t in texts if t not in self._cache))
        if missing:
            was_training = self.training
            self.train(False)
            try:
                with torch.no_grad():
                    feats = self.encode_trimmed(missing)
            finally:
                self.train(was_training)
            fresh = {}
            cpu = [t.detach().cpu() for t in feats]  # one copy per batch
            for i, text in enumerate(missing):
                fresh[text] = tuple(t[i].clone() for t in cpu)
        else:
            fresh = {}
        rows = []
        for text in texts:
            if text in fresh:
                rows.append(fresh[text])
            else:
                self._cache.move_to_end(text)
                rows.append(self._cache[text])
        for text, row in fresh.items():
            self._cache[text] = row
            self._cache_bytes += sum(t.numel() * t.element_size()
                                     for t in row)
        while self._cache and (len(self._cache) > self.cache_size or
                               self._cache_bytes > self.cache_max_bytes):
            _, row = self._cache.popitem(last=False)
            self._cache_bytes -= sum(t.numel() * t.element_size()
                                     for t in row)
        device = next(self.parameters()).device
        words, pad_mask, sentence = (torch.stack(x).to(device)
                                     for x in zip(*rows))
        return TextFeatures(words=words, pad_mask=pad_mask, sentence=sentence)

    def encode_trimmed(self, texts: Sequence[str]):
        """:meth:`encode` with the token axis cut to the longest expression
        of the batch, then padded back to ``max_length``.

        The encoder then runs on ``n <= max_length`` tokens instead of
        ``max_length`` (the synthetic benchmark's expressions have 9 in the
        median, at most 15, against 20): the real tokens' features and the sentence feature
        are the same up to float rounding, since padded tokens are masked
        out of the encoder's attention (a causal encoder never sees tokens
        after its own); ``words`` past the ``n`` computed positions are
        zeros (``pad_mask`` True), which every consumer masks out. Encoders
        without :meth:`encode_ids` fall back to :meth:`encode`.

        Returns:
            TextFeatures with words (B, L, C_t), pad_mask (B, L) bool,
            sentence (B, C_t); L = ``max_length``.
        """
        if type(self).encode_ids is BaseTextEncoder.encode_ids:
            return self.encode(texts)
        tokens = self.tokenize(texts)
        mask = tokens.get('attention_mask')
        length = tokens['input_ids'].shape[1]
        n = length if mask is None else max(int(mask.sum(1).max()), 1)
        if n >= length:  # nothing to cut: encode the tokens already made
            return self.encode_ids(**tokens)
        feats = self.encode_ids(**{k: v[:, :n] for k, v in tokens.items()})
        words = torch.cat([feats.words, feats.words.new_zeros(
            feats.words.shape[0], length - n, feats.words.shape[2])], dim=1)
        pad_mask = torch.cat([feats.pad_mask, feats.pad_mask.new_ones(
            feats.pad_mask.shape[0], length - n)], dim=1)
        return TextFeatures(words=words, pad_mask=pad_mask,
                            sentence=feats.sentence)

    def encode_ids(self, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor):
        """Encode tokenised expressions ((B, L) ids and attention mask, as
        :meth:`tokenize` gives them) -> TextFeatures."""
        raise NotImplementedError(
            f'{type(self).__name__} does not implement encode_ids')

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
