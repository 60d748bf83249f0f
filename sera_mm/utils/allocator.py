"""Settings of the C heap allocator for long CPU runs.

glibc's ``malloc`` serves large blocks with ``mmap`` and gives freed memory
at the top of the heap back to the kernel (``trim``). Its defaults adapt the
mmap threshold to the largest freed block, up to 32 MiB, and trim the heap
when more than twice that is free at its top. A training step allocates and
frees the same activation-sized tensors (up to tens of MiB) every iteration,
so with the defaults the same pages are returned to the kernel and faulted
in again at every step: on the main synthetic job, about 38,000 minor page
faults and a tenth of the CPU time in the kernel per iteration.

:func:`tune_glibc_malloc` fixes the mmap threshold at glibc's ceiling and
keeps freed memory in the process (a trim threshold and a top pad far above
one step's working set), so a step reuses the pages of the previous one. It
changes no result, only where memory comes from; peak resident memory stays
that of the largest step (freed blocks are reused, not accumulated).

The runner applies it from the config (``env_cfg.malloc``, set in
``configs/_base_/default_runtime.py``)::

    env_cfg = dict(malloc=dict(mmap_threshold=32 * 1024**2,
                               trim_threshold=1024**3,
                               top_pad=256 * 1024**2))

``env_cfg.malloc = None`` leaves the allocator alone. A process that
preloads another allocator (``LD_PRELOAD`` of jemalloc or tcmalloc) does
not use glibc's ``malloc``; the call is then skipped. The environment
variables ``MALLOC_MMAP_THRESHOLD_`` etc. set the same parameters from
outside a process.
"""
import ctypes
import ctypes.util
import os
import platform
from typing import Dict, Optional

#: ``mallopt`` parameter numbers (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

#: glibc refuses an mmap threshold above this on 64-bit systems
#: (``HEAP_MAX_SIZE / 2``).
GLIBC_MAX_MMAP_THRESHOLD = 32 * 1024**2

#: The settings of ``configs/_base_/default_runtime.py``.
DEFAULT_MALLOC = dict(mmap_threshold=GLIBC_MAX_MMAP_THRESHOLD,
                      trim_threshold=1024**3,
                      top_pad=256 * 1024**2)

_PARAMS = dict(mmap_threshold=M_MMAP_THRESHOLD,
               trim_threshold=M_TRIM_THRESHOLD, top_pad=M_TOP_PAD)


def _glibc() -> Optional[ctypes.CDLL]:
    """The process's C library if it is glibc and no other allocator is
    preloaded, else None."""
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return None
    preload = os.environ.get('LD_PRELOAD', '')
    if 'jemalloc' in preload or 'tcmalloc' in preload:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    except OSError:
        return None
    return libc if hasattr(libc, 'mallopt') else None


def tune_glibc_malloc(mmap_threshold: Optional[int] = None,
                      trim_threshold: Optional[int] = None,
                      top_pad: Optional[int] = None) -> Dict[str, bool]:
    """Set glibc ``malloc`` parameters of this process (and of the worker
    processes it forks later) with ``mallopt``.

    Args:
        mmap_threshold: blocks at least this large (bytes) are mmapped;
            at most :data:`GLIBC_MAX_MMAP_THRESHOLD`.
        trim_threshold: free memory at the top of the heap above this many
            bytes is given back to the kernel.
        top_pad: extra bytes requested from the kernel whenever the heap
            grows.

    Returns:
        ``{name: applied}`` for the parameters given; empty when the C
        library is not glibc or another allocator is preloaded.

    Raises:
        ValueError: a value is negative, not an integer, or the mmap
            threshold is above glibc's ceiling.
    """
    values = dict(mmap_threshold=mmap_threshold,
                  trim_threshold=trim_threshold, top_pad=top_pad)
    values = {k: v for k, v in values.items() if v is not None}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f'env_cfg.malloc.{name}: expected a byte count '
                             f'(a non-negative int), got {value!r}')
    if values.get('mmap_threshold', 0) > GLIBC_MAX_MMAP_THRESHOLD:
        raise ValueError(
            f'env_cfg.malloc.mmap_threshold: glibc accepts at most '
            f'{GLIBC_MAX_MMAP_THRESHOLD} bytes (32 MiB), got '
            f'{values["mmap_threshold"]}')
    libc = _glibc()
    if libc is None:
        return {}
    # mallopt's value is a C int
    return {name: bool(libc.mallopt(_PARAMS[name],
                                    ctypes.c_int(min(value, 2**31 - 1))))
            for name, value in values.items()}


def apply_malloc_cfg(cfg: Optional[dict]) -> Dict[str, bool]:
    """Apply ``env_cfg.malloc`` (a dict of :func:`tune_glibc_malloc`'s
    arguments, or None to leave the allocator alone)."""
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise TypeError(f'env_cfg.malloc: expected a dict of '
                        f'{sorted(_PARAMS)} or None, got {cfg!r}')
    unknown = sorted(set(cfg) - set(_PARAMS))
    if unknown:
        raise KeyError(f'env_cfg.malloc: unknown keys {unknown}; expected '
                       f'some of {sorted(_PARAMS)}')
    return tune_glibc_malloc(**cfg)


__all__ = ['tune_glibc_malloc', 'apply_malloc_cfg', 'DEFAULT_MALLOC',
           'GLIBC_MAX_MMAP_THRESHOLD']
