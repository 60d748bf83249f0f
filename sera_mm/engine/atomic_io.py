"""Atomic checkpoint writes for local files.

mmengine's ``LocalBackend.put`` opens the destination with ``'wb'`` and writes
into it, so a crash (or a full disk) while saving leaves a truncated file
under the checkpoint's final name, and ``last_checkpoint`` may then point at
it. :class:`AtomicLocalBackend` writes into a temporary file in the same
directory, flushes and fsyncs it, and moves it over the destination with
:func:`os.replace`, which is atomic on POSIX and Windows: readers see either
the previous file or the complete new one, never a partial write.
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Tuple, Union

import torch
from mmengine.fileio import LocalBackend, register_backend

ATOMIC_BACKEND_NAME = 'sera_atomic_local'


def _open_temp(filepath: str) -> Tuple[int, str]:
    """A temporary file beside ``filepath`` with the permissions a plain
    ``open(..., 'w')`` would give (``mkstemp`` creates it 0600)."""
    folder = osp.dirname(filepath)
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    return fd, tmp_path


def atomic_write_bytes(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` atomically.

    Args:
        data: the bytes to write.
        filepath: destination; its folder is created if missing.

    Raises:
        TypeError: if ``data`` is not ``bytes``-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f'atomic_write_bytes expects bytes, got {type(data)}')
    filepath = osp.abspath(os.fspath(filepath))
    fd, tmp_path = _open_temp(filepath)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, filepath)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def atomic_torch_save(obj: object, filepath: Union[str, Path]) -> None:
    """``torch.save`` ``obj`` to ``filepath`` atomically (see module doc)."""
    filepath = osp.abspath(os.fspath(filepath))
    fd, tmp_path = _open_temp(filepath)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, filepath)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine ``LocalBackend`` whose ``put``/``put_text`` are atomic.

    Select it with ``backend_args=dict(backend='sera_atomic_local')`` (what
    :class:`~sera_mm.engine.hooks.PETCheckpointHook` does by default).
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND_NAME, AtomicLocalBackend, force=True)
