"""The atomic writers: permissions from the umask (read, never changed),
directory fsync after the rename, and the writers the prediction dumps use."""
import json
import os
import os.path as osp
import stat
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmengine.structures import PixelData  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.utils import file_io as atomic_io  # noqa: E402
from sera_mm.utils.file_io import (atomic_torch_save,  # noqa: E402
                                      atomic_write_bytes, atomic_write_image,
                                      atomic_write_json, current_umask)
from sera_mm.engine.hooks import PredictionDumpHook  # noqa: E402


@pytest.fixture
def umask_027(monkeypatch):
    """Run with umask 0o027 and ``os.umask`` made to raise: the writers must
    read the umask without setting it."""
    old = os.umask(0o027)

    def no_umask(mask):
        raise AssertionError(f'os.umask({mask:#o}) called: the process-wide '
                             f'umask must not be changed')

    monkeypatch.setattr(os, 'umask', no_umask)
    yield 0o027
    monkeypatch.undo()
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize('source', ['default', 'probe'])
def test_permissions_follow_the_umask_without_changing_it(
        tmp_path, monkeypatch, umask_027, source):
    if source == 'probe':  # a platform without /proc/self/status
        monkeypatch.setattr(atomic_io, '_PROC_STATUS',
                            str(tmp_path / 'no_proc_status'))
        assert atomic_io._umask_from_proc() is None
    assert current_umask(str(tmp_path)) & 0o666 == umask_027 & 0o666
    want = 0o666 & ~umask_027  # 0o640
    atomic_write_bytes(b'data', tmp_path / 'a.bin')
    atomic_torch_save({'w': torch.ones(2)}, tmp_path / 'b.pth')
    atomic_write_json({'k': 1}, tmp_path / 'c.json')
    for name in ('a.bin', 'b.pth', 'c.json'):
        assert _mode(tmp_path / name) == want, name
    # nothing left behind (temporary files, umask probes)
    assert sorted(os.listdir(tmp_path)) == ['a.bin', 'b.pth', 'c.json']


def test_permissions_match_a_plain_open(tmp_path):
    with open(tmp_path / 'plain', 'w') as f:
        f.write('x')
    atomic_write_bytes(b'x', tmp_path / 'atomic')
    assert _mode(tmp_path / 'atomic') == _mode(tmp_path / 'plain')


def test_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append('fsync_dir' if stat.S_ISDIR(os.fstat(fd).st_mode)
                      else 'fsync_file')
        real_fsync(fd)

    def replace(src, dst):
        events.append('replace')
        real_replace(src, dst)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    atomic_write_bytes(b'data', tmp_path / 'a.bin')
    assert events == ['fsync_file', 'replace', 'fsync_dir']
    assert (tmp_path / 'a.bin').read_bytes() == b'data'


def test_folder_fsync_errors_are_ignored(tmp_path, monkeypatch):
    """Platforms that cannot fsync a folder still write the file; an error
    fsyncing the file itself still fails the write."""
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, 'Invalid argument')
        real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', fsync)
    atomic_write_bytes(b'data', tmp_path / 'a.bin')
    assert (tmp_path / 'a.bin').read_bytes() == b'data'


def test_write_image_and_json(tmp_path):
    image = np.zeros((6, 5), np.uint8)
    image[1:3, 2:4] = 255
    atomic_write_image(tmp_path / 'm.png', image)
    import cv2
    back = cv2.imread(str(tmp_path / 'm.png'), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back, image)
    with pytest.raises(ValueError, match='extension'):
        atomic_write_image(tmp_path / 'noext', image)
    with pytest.raises(ValueError, match='could not encode'):
        atomic_write_image(tmp_path / 'bad.png', np.zeros((0, 3), np.uint8))
    atomic_write_json([{'a': 1}], tmp_path / 'r.json', indent=1)
    assert json.loads((tmp_path / 'r.json').read_text()) == [{'a': 1}]
    assert sorted(os.listdir(tmp_path)) == ['m.png', 'r.json']


def _replaced(monkeypatch) -> list:
    """Record the destinations of ``os.replace`` (what atomic writes do)."""
    targets = []
    real = os.replace

    def replace(src, dst):
        targets.append(osp.basename(os.fspath(dst)))
        real(src, dst)

    monkeypatch.setattr(os, 'replace', replace)
    return targets


def test_prediction_dump_hook_writes_atomically(tmp_path, monkeypatch):
    targets = _replaced(monkeypatch)
    hook = PredictionDumpHook(str(tmp_path / 'out'))
    runner = SimpleNamespace(rank=0, logger=SimpleNamespace(
        info=lambda msg: None))
    hook.before_test(runner)
    sample = SegDataSample()
    sample.set_metainfo(dict(img_path='/x/img.png', text='the dog',
                             sent_id=7, ori_shape=(4, 4)))
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    pred[:, :2] = 1
    sample.pred_sem_seg = PixelData(data=pred)
    sample.gt_sem_seg = PixelData(data=pred.clone())
    hook.after_test_iter(runner, 0, outputs=[sample])
    hook.after_test_epoch(runner)
    assert targets == ['img_7.png', 'predictions.json']
    records = json.loads((tmp_path / 'out' / 'predictions.json').read_text())
    assert records[0]['mask'] == osp.join('masks', 'img_7.png')
    assert records[0]['iou'] == 1.0
    assert sorted(os.listdir(tmp_path / 'out' / 'masks')) == ['img_7.png']


def test_save_prediction_writes_atomically(tmp_path, monkeypatch):
    from sera_mm.apis import save_prediction
    targets = _replaced(monkeypatch)
    sample = SegDataSample()
    sample.set_metainfo(dict(text='the dog'))
    sample.pred_sem_seg = PixelData(data=torch.ones(1, 8, 10,
                                                    dtype=torch.long))
    paths = save_prediction(np.zeros((8, 10, 3), np.uint8), sample,
                            str(tmp_path), 'img_0')
    assert targets == ['img_0_mask.png', 'img_0_overlay.png']
    assert all(osp.isfile(p) for p in paths.values())
