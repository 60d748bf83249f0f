"""tools/analysis/compare_commits.py: this checkout against a revision, in
alternating training processes."""
import importlib.util
import json
import os.path as osp
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _tool():
    path = osp.join(ROOT, 'tools', 'analysis', 'compare_commits.py')
    spec = importlib.util.spec_from_file_location('compare_commits_tool',
                                                  path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _worktrees():
    out = subprocess.run(['git', 'worktree', 'list', '--porcelain'],
                         cwd=ROOT, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines()
            if line.startswith('worktree ')]


def test_compare_head_with_itself(tmp_path):
    tool = _tool()
    before = _worktrees()
    report = tool.compare('HEAD', config='configs/sera/sera_tiny_synthetic.py',
                          pairs=1, iters=3, skip=1, threads=1,
                          data_root=str(tmp_path / 'data'),
                          out_dir=str(tmp_path / 'out'))
    pair, = report['pairs']
    assert pair['this_s'] > 0 and pair['rev_s'] > 0
    assert report['ratio']['median'] == pytest.approx(
        pair['rev_s'] / pair['this_s'])
    with open(tmp_path / 'out' / 'compare_commits.json') as f:
        assert json.load(f)['commit'] == report['commit']
    md = (tmp_path / 'out' / 'compare_commits.md').read_text()
    assert 'ratio (rev / this' in md
    assert _worktrees() == before  # the temporary worktree is gone


def test_compare_commits_errors(tmp_path, capsys):
    tool = _tool()
    assert tool.main(['no-such-revision-x', '--out-dir',
                      str(tmp_path)]) == 2
    assert 'is not a commit' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(['HEAD', '--iters', '3', '--skip', '3'])
