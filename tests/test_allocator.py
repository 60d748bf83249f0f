"""glibc malloc settings (sera_mm.utils.allocator) and their use by the
runner: fewer page faults per step, errors naming the config key."""
import os.path as osp
import platform
import subprocess
import sys
import textwrap

import pytest

from sera_mm.utils.allocator import (DEFAULT_MALLOC, GLIBC_MAX_MMAP_THRESHOLD,
                                     apply_malloc_cfg, tune_glibc_malloc)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'

FAULTS = textwrap.dedent('''
    import importlib.util, resource, sys
    import torch
    # the module alone (importing the package would load mmseg too)
    spec = importlib.util.spec_from_file_location('allocator', sys.argv[2])
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)
    if sys.argv[1] == 'tuned':
        assert all(allocator.tune_glibc_malloc(
            **allocator.DEFAULT_MALLOC).values())
    torch.set_num_threads(1)
    x = torch.randn(8, 48, 80, 80)  # 9.8 MB activations, as in a step
    w = torch.randn(48, 48, 3, 3)
    def step():
        y = torch.nn.functional.conv2d(x, w, padding=1)
        return (torch.relu(y) * 2 + y).sum()
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
''')


def _faults(mode):
    module = osp.join(ROOT, 'sera_mm', 'utils', 'allocator.py')
    out = subprocess.run([sys.executable, '-c', FAULTS, mode, module],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason='glibc malloc settings (Linux/glibc)')
def test_tuned_malloc_stops_refaulting_freed_memory():
    default, tuned = _faults('default'), _faults('tuned')
    # each step's ~30 MB of temporaries: refaulted under the defaults
    # (thousands of 4 KiB pages per step), reused once tuned
    assert default > 10 * 2400, default
    assert tuned * 5 < default, (tuned, default)


@pytest.mark.skipif(not GLIBC, reason='glibc malloc settings (Linux/glibc)')
def test_tune_reports_each_parameter_applied():
    assert tune_glibc_malloc(**DEFAULT_MALLOC) == {
        'mmap_threshold': True, 'trim_threshold': True, 'top_pad': True}
    assert apply_malloc_cfg(None) == {}


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match='env_cfg.malloc.top_pad'):
        tune_glibc_malloc(top_pad=-1)
    with pytest.raises(ValueError, match='env_cfg.malloc.trim_threshold'):
        tune_glibc_malloc(trim_threshold='1G')
    with pytest.raises(ValueError, match='at most 33554432'):
        tune_glibc_malloc(mmap_threshold=GLIBC_MAX_MMAP_THRESHOLD + 1)
    with pytest.raises(KeyError, match="unknown keys \\['arena_max'\\]"):
        apply_malloc_cfg(dict(arena_max=2))
    with pytest.raises(TypeError, match='env_cfg.malloc'):
        apply_malloc_cfg(True)


def test_preloaded_allocator_is_left_alone(monkeypatch):
    monkeypatch.setenv('LD_PRELOAD', '/usr/lib/libjemalloc.so.2')
    assert tune_glibc_malloc(**DEFAULT_MALLOC) == {}


def test_runner_applies_the_config(monkeypatch):
    from mmengine.config import Config

    from sera_mm.engine import runner as runner_module
    seen = []
    monkeypatch.setattr(runner_module, 'apply_malloc_cfg', seen.append)
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/default_runtime.py'))
    assert cfg.env_cfg.malloc == DEFAULT_MALLOC
    runner = runner_module.QuietConsoleRunner.__new__(
        runner_module.QuietConsoleRunner)
    # only the allocator part of setup_env is of interest here
    monkeypatch.setattr(runner_module.Runner, 'setup_env',
                        lambda self, env_cfg: None)
    runner.setup_env(cfg.env_cfg)
    assert seen == [DEFAULT_MALLOC]
