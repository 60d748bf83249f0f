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


def test_compare_evaluation_with_itself(tmp_path):
    """--test-checkpoint: both sides run tools/test.py on the same
    checkpoint; the report holds whole-process seconds and their ratio."""
    tool = _tool()
    config = 'configs/sera/sera_tiny_synthetic.py'
    data = str(tmp_path / 'data')
    tool.run_side(ROOT, config, str(tmp_path / 'train'), 2, 1, data, [])
    checkpoint = tmp_path / 'train' / 'iter_2.pth'
    assert checkpoint.is_file()
    report = tool.compare('HEAD', config=config, pairs=1, threads=1,
                          data_root=data, out_dir=str(tmp_path / 'out'),
                          test_checkpoint=str(checkpoint), test_split='val')
    pair, = report['pairs']
    assert pair['this_s'] > 0 and pair['rev_s'] > 0
    assert report['ratio']['median'] == pytest.approx(
        pair['rev_s'] / pair['this_s'])
    md = (tmp_path / 'out' / 'compare_commits.md').read_text()
    assert '`tools/test.py` of `iter_2.pth` on val' in md
    assert ' s, ratio ' in md
    with pytest.raises(FileNotFoundError, match='--test-checkpoint'):
        tool.compare('HEAD', config=config, test_checkpoint=str(
            tmp_path / 'missing.pth'), out_dir=str(tmp_path / 'out'))


def test_batch_size_and_image_window():
    """Each side's batch comes from its config (after --cfg-options); an
    image window becomes iterations at that batch."""
    from mmengine.config import Config
    tool = _tool()
    config = 'configs/sera/sera_tiny_synthetic.py'
    expected = Config.fromfile(osp.join(ROOT, config)).train_dataloader[
        'batch_size']
    assert tool.batch_size(ROOT, config, []) == expected
    assert tool.batch_size(ROOT, config,
                           ['train_dataloader.batch_size=5']) == 5
    with pytest.raises(ValueError, match='sera_tiny_synthetic.py.*'
                       'positive integer, got 0'):
        tool.batch_size(ROOT, config, ['train_dataloader.batch_size=0'])
    assert tool.window(16, 1600, 640) == (100, 40)
    assert tool.window(32, 1600, 640) == (50, 20)
    assert tool.window(3, 10, 0) == (4, 0)


def test_compare_over_images_reports_throughput(tmp_path):
    """--images/--skip-images: iterations follow the batch, and the report
    gives images per second and their ratio (this / rev)."""
    tool = _tool()
    report = tool.compare('HEAD', config='configs/sera/sera_tiny_synthetic.py',
                          pairs=1, threads=1, images=6, skip_images=2,
                          data_root=str(tmp_path / 'data'),
                          out_dir=str(tmp_path / 'out'),
                          options=['train_dataloader.batch_size=2'])
    assert report['batch_size'] == {'this': 2, 'rev': 2}
    assert report['windows']['this'] == {'iters': 3, 'skip': 1}
    pair, = report['pairs']
    assert pair['this_images_s'] == pytest.approx(2 / pair['this_s'])
    assert pair['throughput_ratio'] == pytest.approx(
        pair['this_images_s'] / pair['rev_images_s'])
    # equal batches: images/s ratio (this / rev) = time ratio (rev / this)
    assert report['throughput_ratio']['median'] == pytest.approx(
        report['ratio']['median'])
    md = (tmp_path / 'out' / 'compare_commits.md').read_text()
    assert 'images 3-6 of the data order' in md
    assert 'training throughput, images/s' in md
    assert 'images/s, ratio' in md
