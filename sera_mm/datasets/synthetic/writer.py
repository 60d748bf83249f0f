"""Atomic writing of a REFER-layout dataset directory.

The dataset is written into a hidden temporary directory beside the
target, a completion marker is written last, and the directory is then
renamed into place. A reader therefore sees either no dataset or a
complete one.
"""
import json
import os
import os.path as osp
import pickle
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional

MARKER = '.complete'
REFS_FILE = 'refs(synthetic).p'
#: Refs of the generalised (gRefCOCO-layout) variant.
GREFS_FILE = 'grefs(synthetic).json'
INSTANCES_FILE = 'instances.json'
IMAGE_DIR = 'images'


def is_synthetic_refer_complete(out_dir: str,
                                refs_file: str = REFS_FILE) -> bool:
    """Whether ``out_dir`` holds a complete generated dataset: a readable
    completion marker, both annotation files (the refs file is
    ``refs_file``: ``refs(synthetic).p`` for the REFER variant,
    ``grefs(synthetic).json`` for the generalised one) and the image
    folder."""
    marker = osp.join(out_dir, MARKER)
    if not osp.isfile(marker):
        return False
    try:
        with open(marker, 'r', encoding='utf-8') as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    return (osp.isfile(osp.join(out_dir, refs_file))
            and osp.isfile(osp.join(out_dir, INSTANCES_FILE))
            and osp.isdir(osp.join(out_dir, IMAGE_DIR)))


def read_summary(out_dir: str,
                 refs_file: str = REFS_FILE) -> Optional[dict]:
    """The summary stored in a complete dataset's marker, else None."""
    if not is_synthetic_refer_complete(out_dir, refs_file):
        return None
    with open(osp.join(out_dir, MARKER), 'r', encoding='utf-8') as f:
        return json.load(f)


def dump_json(obj, path: str) -> None:
    """Deterministic JSON (sorted keys, no spaces)."""
    with open(path, 'w', encoding='utf-8') as f:
        f.write(json.dumps(obj, sort_keys=True, separators=(',', ':')))


def dump_refs(refs: list, path: str) -> None:
    """Pickle refs with protocol 2 (readable by the public REFER API)."""
    with open(path, 'wb') as f:
        pickle.dump(refs, f, protocol=2)


def check_target(out_dir: str, overwrite: bool,
                 refs_file: str = REFS_FILE) -> str:
    """Decide what to do with an existing ``out_dir``.

    Returns:
        'reuse' (a complete dataset is there and ``overwrite`` is False),
        'replace' (a complete dataset is there and ``overwrite`` is True),
        or 'create' (nothing there, or an empty directory).

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty and is not a
            dataset written by this generator (never deleted).
        NotADirectoryError: ``out_dir`` is a file.
    """
    if not osp.exists(out_dir):
        return 'create'
    if not osp.isdir(out_dir):
        raise NotADirectoryError(f'out_dir {out_dir!r} exists and is not a '
                                 'directory')
    if is_synthetic_refer_complete(out_dir, refs_file):
        return 'replace' if overwrite else 'reuse'
    if os.listdir(out_dir):
        raise FileExistsError(
            f'out_dir {out_dir!r} exists, is not empty and holds no complete '
            f'synthetic dataset (no {MARKER} marker); refusing to touch it. '
            'Remove it or choose another directory.')
    return 'create'


@contextmanager
def atomic_directory(out_dir: str,
                     refs_file: str = REFS_FILE) -> Iterator[str]:
    """Yield a temporary directory beside ``out_dir``; on success, move it
    to ``out_dir`` (replacing a previous dataset there); on error, delete
    it and leave ``out_dir`` untouched."""
    out_dir = osp.abspath(out_dir)
    parent = osp.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.tmp-',
                           dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates it private (0700)
    try:
        yield tmp
        old = None
        if osp.isdir(out_dir):
            if os.listdir(out_dir) and not is_synthetic_refer_complete(
                    out_dir, refs_file):
                raise FileExistsError(
                    f'out_dir {out_dir!r} changed during generation and now '
                    'holds files that are not a generated dataset')
            old = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.old-',
                                   dir=parent)
            os.rmdir(old)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
