"""A bounded cache of the output of a backbone's frozen prefix, keyed by
the input pixels.

When the first blocks of a backbone are frozen outright (no trainable
parameter, BatchNorm in eval mode, no dropout, no adapter among them), their
output depends only on the input image. Datasets without photometric
augmentation (the synthetic benchmark) show every training image many
times, so that output can be computed once per image and reused. The key is
128 bits of the SHA-256 digest of the sample's input tensor (its bytes,
dtype, shape and memory layout): any change of the pixels (augmentation, a
flip, another letterbox) is a different key, so the cache never serves
features of another input.
"""
import hashlib
from collections import OrderedDict
from typing import Callable, List

import torch
from torch import Tensor


def tensor_key(x: Tensor) -> bytes:
    """128-bit key of one sample: the first 16 bytes of the SHA-256 digest
    of its shape, dtype, memory layout and the bytes of its values.

    The values are hashed where they lie, without a copy (a sample on
    another device is copied to the CPU first): a sample of a
    channels-last batch (C, H, W) is contiguous in (H, W, C) order and is
    read in that order (its layout is part of the key, so the same values
    in another layout are another key, never another sample's entry).
    Any other non-contiguous sample is made contiguous first. Every dtype
    is read as raw bytes (bfloat16 included).
    """
    x = x.detach()
    if x.device.type != 'cpu':
        x = x.cpu()
    layout = 'contiguous'
    if not x.is_contiguous():
        if x.dim() == 3 and x.permute(1, 2, 0).is_contiguous():
            x, layout = x.permute(1, 2, 0), 'channels_last'
        else:
            x = x.contiguous()
    h = hashlib.sha256(
        repr((tuple(x.shape), str(x.dtype), layout)).encode())
    if x.numel():
        h.update(x.reshape(-1).view(torch.uint8).numpy())
    return h.digest()[:16]


class FrozenPrefixCache:
    """LRU cache of per-sample prefix outputs, bounded in entries and
    bytes, held in CPU memory.

    Args:
        max_entries: at most this many samples (> 0).
        max_bytes: at most this many bytes of cached tensors.

    Attributes:
        hits / misses: counters since creation (or :meth:`clear`).
    """

    def __init__(self, max_entries: int,
                 max_bytes: int = 512 * 1024 * 1024) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f'max_entries must be an int >= 1, got '
                             f'{max_entries!r}')
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f'max_bytes must be an int >= 0, got '
                             f'{max_bytes!r}')
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._store: 'OrderedDict[bytes, Tensor]' = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._store.clear()
        self._bytes = 0
        self.hits = self.misses = 0

    def __call__(self, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn(x)`` (B, ...) -> (B, ...), served per sample from the cache
        where the same input was seen; ``fn`` runs once on the misses.

        ``fn`` must treat samples independently (frozen BatchNorm in eval
        mode, no dropout). Results computed on another batch may differ
        from a fresh computation by float rounding only.
        """
        keys = [tensor_key(s) for s in x]
        miss = [i for i, k in enumerate(keys) if k not in self._store]
        # duplicates inside one batch are computed once
        first = {}
        for i in miss:
            first.setdefault(keys[i], i)
        todo = sorted(first.values())
        fresh = {}
        if todo:
            with torch.no_grad():
                out = fn(x[todo])
            for j, i in enumerate(todo):
                fresh[keys[i]] = out[j].detach().to('cpu', copy=True)
        rows: List[Tensor] = []
        for k in keys:
            if k in fresh:
                rows.append(fresh[k])
            else:
                self._store.move_to_end(k)
                rows.append(self._store[k])
        self.misses += len(miss)
        self.hits += len(keys) - len(miss)
        for k, v in fresh.items():
            self._store[k] = v
            self._bytes += v.numel() * v.element_size()
        while self._store and (len(self._store) > self.max_entries
                               or self._bytes > self.max_bytes):
            _, v = self._store.popitem(last=False)
            self._bytes -= v.numel() * v.element_size()
        return torch.stack(rows).to(x.device)


__all__ = ['FrozenPrefixCache', 'tensor_key']
