"""tools/analysis/gpu_check.py: a clear refusal without CUDA, and its whole
train / test / summary wiring on CPU with the tiny config."""
import importlib.util
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'gpu_check', osp.join(ROOT, 'tools', 'analysis', 'gpu_check.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_refuses_without_cuda(capsys, tmp_path):
    rc = _tool().main(['--out-dir', str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'no CUDA device' in err and 'GPU machine' in err
    assert not (tmp_path / 'gpu_check.md').exists()


def test_check_config_trains_the_configured_geometry_on_synthetic(tmp_path):
    from mmengine.config import Config
    tool = _tool()
    path = tool.make_check_config('configs/sera/sera_vitb_refcoco.py',
                                  str(tmp_path / 'c.py'), iters=50,
                                  batch_size=8, test_samples=256,
                                  data_root='data/synthetic')
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == 'CLIPVisionBackbone'
    assert cfg.model.backbone.pretrained is None  # random weights
    assert cfg.model.data_preprocessor['size'] == (416, 416)
    letterbox = [t for t in cfg.train_dataloader.dataset.pipeline
                 if t['type'] == 'Letterbox']
    assert letterbox[0]['size'] == 416
    assert cfg.train_dataloader.dataset.type == 'SyntheticReferDataset'
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.train_cfg.max_iters == 50
    assert cfg.test_dataloader.dataset.indices == 256


def test_cpu_wiring_with_the_tiny_config(tmp_path, synthetic_tiny_root):
    out = tmp_path / 'check'
    rc = _tool().main([
        '--allow-cpu', '--configs', 'configs/sera/sera_tiny_synthetic.py',
        '--out-dir', str(out), '--iters', '2', '--batch-size', '2',
        '--test-samples', '6', '--data-root', synthetic_tiny_root,
        '--throughput-batch', '2', '--bench-runs', '1'])
    assert rc == 0
    text = (out / 'gpu_check.md').read_text()
    assert text.startswith('# GPU check: CPU')
    rows = [ln for ln in text.splitlines()
            if ln.startswith('| sera_tiny_synthetic |')]
    fp32 = [r for r in rows if '| fp32 |' in r]
    amp = [r for r in rows if '| amp |' in r]
    assert len(fp32) == 1 and len(amp) == 1
    cells = [c.strip() for c in fp32[0].strip('|').split('|')]
    assert float(cells[2]) > 0 and 0 <= float(cells[6]) <= 100
    assert any('latency, batch 1' in r for r in rows)
    assert any('train step' in r for r in rows)
