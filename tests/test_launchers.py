"""Launch scripts: multi-node torchrun and Slurm command lines (checked with
stand-ins for ``python`` and ``srun`` that print their arguments)."""
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _echo(tmp_path, name):
    """An executable ``name`` that prints its arguments one per line and
    the PYTHONPATH it saw."""
    script = tmp_path / f'{name}.py'
    script.write_text('import os, sys\n'
                      'print("PYTHONPATH=" + os.environ.get("PYTHONPATH", ""))\n'
                      'print("\\n".join(sys.argv[1:]))\n')
    # a shell wrapper: a shebang line cannot hold a path with a space
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(0o755)
    return str(path)


def _run(script, args, env):
    full = dict(os.environ, **env)
    return subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args],
                          capture_output=True, text=True, env=full,
                          timeout=60)


def test_dist_train_two_nodes(tmp_path):
    py = _echo(tmp_path, 'py')
    out = _run('dist_train.sh', ['cfg.py', '8', '--amp'],
               dict(PYTHON=py, NNODES='2', NODE_RANK='1',
                    MASTER_ADDR='10.0.0.7', PORT='29999'))
    assert out.returncode == 0, out.stderr
    args = out.stdout.splitlines()
    assert args[1:3] == ['-m', 'torch.distributed.run']
    for flag in ('--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.7',
                 '--nproc_per_node=8', '--master_port=29999'):
        assert flag in args
    i = args.index('cfg.py')
    assert args[i - 1].endswith(osp.join('tools', 'train.py'))
    assert args[i + 1:] == ['--launcher', 'pytorch', '--amp']


def test_dist_test_two_nodes(tmp_path):
    py = _echo(tmp_path, 'py')
    out = _run('dist_test.sh', ['cfg.py', 'ckpt.pth', '4'],
               dict(PYTHON=py, NNODES='2', NODE_RANK='0'))
    assert out.returncode == 0, out.stderr
    args = out.stdout.splitlines()
    assert '--nnodes=2' in args and '--nproc_per_node=4' in args
    i = args.index('cfg.py')
    assert args[i:] == ['cfg.py', 'ckpt.pth', '--launcher', 'pytorch']


@pytest.mark.parametrize('work_dir', [None, 'work_dirs/x'])
def test_slurm_train(tmp_path, work_dir):
    _echo(tmp_path, 'srun')
    env = dict(PATH=f'{tmp_path}:{os.environ["PATH"]}', GPUS='16',
               SRUN_ARGS='--time=1:00:00 --mem=0')
    extra = [work_dir] if work_dir else []
    out = _run('slurm_train.sh', ['gpu', 'sera', 'cfg.py', *extra,
                                  '--amp'], env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith('PYTHONPATH=' + ROOT)
    args = lines[1:]
    assert args[:2] == ['-p', 'gpu']
    for flag in ('--job-name=sera', '--gres=gpu:8', '--ntasks=16',
                 '--ntasks-per-node=8', '--cpus-per-task=5',
                 '--kill-on-bad-exit=1', '--time=1:00:00', '--mem=0'):
        assert flag in args
    i = args.index('cfg.py')
    assert args[i - 1].endswith(osp.join('tools', 'train.py'))
    tail = ['--launcher', 'slurm'] + (
        ['--work-dir', work_dir] if work_dir else []) + ['--amp']
    assert args[i + 1:] == tail


def test_slurm_test_and_usage(tmp_path):
    _echo(tmp_path, 'srun')
    env = dict(PATH=f'{tmp_path}:{os.environ["PATH"]}', GPUS='4')
    out = _run('slurm_test.sh', ['gpu', 'eval', 'cfg.py', 'ckpt.pth'], env)
    assert out.returncode == 0, out.stderr
    args = out.stdout.splitlines()[1:]
    assert '--ntasks=4' in args and '--gres=gpu:4' in args
    i = args.index('cfg.py')
    assert args[i:] == ['cfg.py', 'ckpt.pth', '--launcher', 'slurm']
    bad = _run('slurm_train.sh', ['gpu'], env)
    assert bad.returncode == 2 and 'usage' in bad.stderr
