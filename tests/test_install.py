"""tools/install.sh keeps an installed torch, installs the CPU wheel only
where none is installed (or with --cpu), touches torchvision only where it
fails to load, and swaps mmcv-lite for the compiled mmcv with --full-mmcv;
setup.py's requirements follow SERA_MMCV. Checked with a stand-in Python
that records every pip command."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

FAKE = '''import os, sys
log = os.environ['FAKE_LOG']
installed = os.environ.get('FAKE_INSTALLED', '').split(',')
args = sys.argv[1:]
if args[:2] == ['-m', 'pip']:
    with open(log, 'a') as f:
        f.write(' '.join(args[2:]) + '\\n')
    if args[2] == 'show':
        sys.exit(0 if args[-1] in installed else 1)
    sys.exit(0)
if args[0] == '-c':
    code = args[1]
    if 'import torchvision' in code:
        if os.environ.get('FAKE_TV_BROKEN') == '1':
            print('RuntimeError: operator torchvision::nms does not exist',
                  file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    if 'mmcv._ext' in code:
        sys.exit(0 if 'mmcv' in installed else 1)
    if code.strip() == 'import torch':
        sys.exit(0 if 'torch' in installed else 1)
    if 'torch.__version__' in code and 'sera_mm' not in code:
        print('2.11.0+cu130')
    sys.exit(0)
sys.exit(3)
'''


def _install(tmp_path, *options, installed=(), tv_broken=False):
    # a shell wrapper around the stand-in: a shebang line cannot hold an
    # interpreter path with a space
    (tmp_path / 'fake_python.py').write_text(FAKE)
    py = tmp_path / 'python'
    py.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n'
                  % (sys.executable, tmp_path / 'fake_python.py'))
    py.chmod(0o755)
    log = tmp_path / 'pip.log'
    env = dict(os.environ, PYTHON=str(py), FAKE_LOG=str(log),
               FAKE_INSTALLED=','.join(installed),
               FAKE_TV_BROKEN='1' if tv_broken else '0')
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', 'install.sh'),
                          *options], capture_output=True, text=True,
                         env=env, timeout=60)
    cmds = log.read_text().splitlines() if log.exists() else []
    return out, cmds


def test_installed_torch_is_kept(tmp_path):
    out, cmds = _install(tmp_path, '--tests', installed=('torch', ))
    assert out.returncode == 0, out.stderr
    assert not any(w.startswith('torch==') for c in cmds for w in c.split())
    assert 'keeping the installed torch 2.11.0+cu130' in out.stderr
    assert 'install -q -e .[tests]' in cmds


def test_cpu_wheel_only_without_torch_or_when_asked(tmp_path):
    out, cmds = _install(tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'install -q torch==2.13.0' in cmds
    out, cmds = _install(tmp_path / '..' / osp.basename(tmp_path), '--cpu',
                         installed=('torch', ))
    assert any(c == 'install -q torch==2.13.0' for c in cmds)


def test_torchvision_removed_only_when_broken(tmp_path):
    a = tmp_path / 'a'
    a.mkdir()
    out, cmds = _install(a, installed=('torch', 'torchvision'))
    assert not any(c.startswith('uninstall') for c in cmds)
    b = tmp_path / 'b'
    b.mkdir()
    out, cmds = _install(b, installed=('torch', 'torchvision'),
                         tv_broken=True)
    assert 'uninstall -y -q torchvision' in cmds
    assert 'torchvision::nms' in out.stderr


def test_full_mmcv_replaces_mmcv_lite(tmp_path):
    out, cmds = _install(tmp_path, '--full-mmcv',
                         installed=('torch', 'mmcv-lite'))
    assert out.returncode == 0, out.stderr
    i = cmds.index('uninstall -y -q mmcv-lite')
    j = [k for k, c in enumerate(cmds) if 'mmcv==2.1.0' in c][0]
    assert i < j and '--no-build-isolation' in cmds[j]
    # an already compiled mmcv is not rebuilt
    other = tmp_path / 'o'
    other.mkdir()
    out, cmds = _install(other, '--full-mmcv', installed=('torch', 'mmcv'))
    assert not any('mmcv==2.1.0' in c for c in cmds)


def test_unknown_option(tmp_path):
    out, _ = _install(tmp_path, '--gpu')
    assert out.returncode == 2 and "unknown option '--gpu'" in out.stderr


def _setup_module():
    spec = importlib.util.spec_from_file_location(
        'sera_setup', osp.join(ROOT, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: setup() is not called
    return module


def test_setup_requirements_follow_sera_mmcv():
    mod = _setup_module()
    lite = mod.runtime_requirements({})
    assert 'mmcv-lite==2.1.0' in lite and 'mmcv==2.1.0' not in lite
    full = mod.runtime_requirements({'SERA_MMCV': 'full'})
    assert 'mmcv==2.1.0' in full and not any(
        r.startswith('mmcv-lite') for r in full)
    torch_req = [r for r in lite if r.startswith('torch')]
    assert torch_req == ['torch>=2.4,<2.15']  # admits 2.11 and 2.13
    with pytest.raises(ValueError, match='SERA_MMCV'):
        mod.runtime_requirements({'SERA_MMCV': 'compiled'})
