"""Atomic checkpoint writes for local files.

mmengine's ``LocalBackend.put`` opens the destination with ``'wb'`` and writes
into it, so a crash (or a full disk) while saving leaves a truncated file
under the checkpoint's final name, and ``last_checkpoint`` may then point at
it. :class:`AtomicLocalBackend` writes into a temporary file in the same
directory, flushes and fsyncs it, and moves it over the destination with
:func:`os.replace`, which is atomic on POSIX and Windows: readers see either
the previous file or the complete new one, never a partial write. The
folder is fsynced after the rename (where the platform allows it) so the new
name itself survives a power loss.

The module imports no torch at import time (``atomic_torch_save`` imports it
when called), so the torch-free ONNX tools can write files through it.

The temporary file gets the permissions a plain ``open(..., 'w')`` would
give (``0o666 & ~umask``). The umask is read without changing it (no
``os.umask`` round trip, which races with other threads creating files):
from the ``Umask:`` line of ``/proc/self/status`` where there is one, else
from the mode of a probe file created with ``0o666`` in the folder.
"""
import json
import os
import os.path as osp
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Tuple, Union

import numpy as np
from mmengine.fileio import LocalBackend, register_backend

ATOMIC_BACKEND_NAME = 'sera_atomic_local'
_PROC_STATUS = '/proc/self/status'


def _umask_from_proc() -> Optional[int]:
    """The process umask from ``/proc/self/status`` (Linux >= 4.7), or None
    where that file or its ``Umask:`` line is missing."""
    try:
        with open(_PROC_STATUS, encoding='ascii', errors='replace') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        return None
    return None


def _umask_from_probe(folder: str) -> int:
    """The umask's read/write bits, from the mode a file created in
    ``folder`` with ``0o666`` gets (the probe is removed)."""
    probe = osp.join(folder, f'.umask_probe.{os.getpid()}.{uuid.uuid4().hex}')
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        os.remove(probe)
    return 0o666 & ~mode


def current_umask(folder: str) -> int:
    """The process umask, read without changing it (see module doc).

    Args:
        folder: an existing, writable folder for the probe-file fallback.
    """
    umask = _umask_from_proc()
    return _umask_from_probe(folder) if umask is None else umask


def _open_temp(filepath: str) -> Tuple[int, str]:
    """A temporary file beside ``filepath`` with the permissions a plain
    ``open(..., 'w')`` would give (``mkstemp`` creates it 0600)."""
    folder = osp.dirname(filepath)
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=folder)
    try:
        mode = 0o666 & ~current_umask(folder)
        if hasattr(os, 'fchmod'):
            os.fchmod(fd, mode)
        else:  # Windows
            os.chmod(tmp_path, mode)
    except BaseException:
        os.close(fd)
        os.remove(tmp_path)
        raise
    return fd, tmp_path


def _fsync_dir(folder: str) -> None:
    """fsync ``folder`` so a rename into it is durable; a no-op where
    folders cannot be opened or fsynced (e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace(tmp_path: str, filepath: str) -> None:
    os.replace(tmp_path, filepath)
    _fsync_dir(osp.dirname(filepath))


def _write_atomically(filepath: Union[str, Path],
                      write: Callable[[BinaryIO], Any]) -> None:
    """Run ``write`` on a temporary file beside ``filepath`` (flushed and
    fsynced), then move it over ``filepath``; the temporary file is removed
    on any failure."""
    filepath = osp.abspath(os.fspath(filepath))
    fd, tmp_path = _open_temp(filepath)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp_path, filepath)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


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
    _write_atomically(filepath, lambda f: f.write(data))


def atomic_write_text(text: str, filepath: Union[str, Path],
                      encoding: str = 'utf-8') -> None:
    """Write ``text`` to ``filepath`` atomically (encoded with ``encoding``).

    Raises:
        TypeError: if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f'atomic_write_text expects str, got {type(text)}')
    atomic_write_bytes(text.encode(encoding), filepath)


def atomic_write_json(obj: Any, filepath: Union[str, Path],
                      **json_kwargs) -> None:
    """``json.dump`` ``obj`` to ``filepath`` atomically (UTF-8).

    Args:
        obj: a JSON-serialisable object.
        filepath: destination.
        **json_kwargs: :func:`json.dumps` arguments (``indent``,
            ``default``, ...).
    """
    atomic_write_text(json.dumps(obj, **json_kwargs), filepath)


def atomic_write_image(filepath: Union[str, Path], image: np.ndarray) -> None:
    """Encode ``image`` with OpenCV (format from the file extension) and
    write it to ``filepath`` atomically; unlike ``cv2.imwrite`` a failure
    raises.

    Raises:
        ValueError: OpenCV cannot encode ``image`` in that format.
    """
    import cv2
    filepath = os.fspath(filepath)
    ext = osp.splitext(filepath)[1]
    if not ext:
        raise ValueError(f'{filepath}: needs an image extension (.png, '
                         f'.jpg, ...) to choose the format')
    what = (f'{filepath}: OpenCV could not encode an image of shape '
            f'{getattr(image, "shape", None)} and dtype '
            f'{getattr(image, "dtype", None)} as {ext}')
    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error as e:
        raise ValueError(f'{what}: {e}') from e
    if not ok:
        raise ValueError(what)
    atomic_write_bytes(buf.tobytes(), filepath)


def atomic_torch_save(obj: object, filepath: Union[str, Path]) -> None:
    """``torch.save`` ``obj`` to ``filepath`` atomically (see module doc)."""
    import torch
    _write_atomically(filepath, lambda f: torch.save(obj, f))


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
