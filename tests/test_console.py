"""The console of a training run shows progress and results; mmengine's
environment report, the full config and the hook table go to the log file
only."""
import glob
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(ROOT, 'configs', 'sera', 'sera_tiny_synthetic.py')


def test_train_console_line_budget(tmp_path):
    data = str(tmp_path / 'data')
    work = str(tmp_path / 'work')
    opts = [f'{k}.dataset.data_root={data}' for k in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    # the main job's logging rhythm (a progress line every few iterations)
    opts.append('default_hooks.logger.interval=4')
    env = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONWARNINGS='default')
    out = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), TINY,
         '--work-dir', work, '--test-splits', 'val', '--cfg-options',
         *opts],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = (out.stdout + out.stderr).splitlines()
    first = next(i for i, line in enumerate(lines) if 'Iter(train)' in line)
    assert first <= 40, '\n'.join(lines[:first])
    assert len(lines) <= 80, '\n'.join(lines)
    text = '\n'.join(lines)
    for hidden in ('System environment', 'Config:',
                   'Hooks will be executed', 'MultiScaleDeformableAttention'):
        assert hidden not in text
    # the log file keeps them
    logs = glob.glob(osp.join(work, '*', '*.log'))
    assert len(logs) == 1
    with open(logs[0]) as f:
        log = f.read()
    assert 'System environment' in log and 'Config:' in log
    assert 'Hooks will be executed' in log
    assert 'final metrics' in text
