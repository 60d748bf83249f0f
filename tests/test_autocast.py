"""Mixed precision: the routed mixture keeps working when experts return
different dtypes, and every model family trains a step under CPU autocast
in float16 and bfloat16 (tiny geometry of the shipped configs)."""
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn

from mmengine.config import Config  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.models.routers.mixture import mix_experts  # noqa: E402
from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
register_all_modules()

TINY = {
    'sera': 'configs/sera/sera_tiny_synthetic.py',
    'sera_paper_experts': 'configs/sera/sera_tiny_synthetic.py',
    'cris': 'projects/cris_sera/configs/cris_sera-fusion_tiny_synthetic.py',
    'etris': 'projects/etris_sera/configs/etris_sera_tiny_synthetic.py',
    'detris': 'projects/detris_sera/configs/detris_tiny_synthetic.py',
    'sera_paper': 'projects/detris_sera/configs/sera-paper_tiny_synthetic.py',
}


def _paper_experts(cfg):
    """The paper's experts inside SERA-MM's model (top-2 routing in the
    neck)."""
    cfg.model.backbone.adapter = dict(type='SERAPaperAdapter',
                                      hidden_channels=16, num_heads=2)
    cfg.model.neck.experts = ['paper_spatial', 'paper_boundary',
                              'paper_shape']
    cfg.model.neck.residual = False
    cfg.model.neck.router.update(top_k=2, noise='fixed')


class _Cast(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return (x * self.scale).to(self.dtype)


def test_mix_experts_promotes_mixed_expert_dtypes():
    experts = [_Cast(torch.float16), _Cast(torch.float32)]
    x = torch.randn(4, 3, 2, 2)
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    out = mix_experts(experts, x, weights)
    assert out.dtype == torch.float32
    expected = (x.half().float() * weights[:, 0, None, None, None] +
                x * weights[:, 1, None, None, None])
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=1e-3)
    out.sum().backward()
    assert experts[0].scale.grad is not None


def _autocast_supported(dtype):
    try:
        with torch.autocast('cpu', dtype=dtype):
            torch.ones(2, 2) @ torch.ones(2, 2)
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16],
                         ids=['bf16', 'fp16'])
@pytest.mark.parametrize('key', sorted(TINY))
def test_tiny_models_train_a_step_under_autocast(key, dtype):
    if not _autocast_supported(dtype):
        pytest.skip(f'this torch build has no CPU autocast for {dtype}')
    cfg = Config.fromfile(osp.join(ROOT, TINY[key]))
    if key == 'sera_paper_experts':
        _paper_experts(cfg)
    torch.manual_seed(0)
    model = MODELS.build(random_init_cfg(cfg.model, force=True)).train()
    size = 64
    samples = []
    for i in range(2):
        s = SegDataSample(metainfo=dict(
            text=['the left circle', 'a big red square'][i],
            img_shape=(size, size), ori_shape=(size, size),
            pad_shape=(size, size), img_padding_size=[0, 0, 0, 0]))
        mask = torch.zeros(1, size, size, dtype=torch.long)
        mask[:, 10:40, 12:50] = 1
        s.gt_sem_seg = PixelData(data=mask)
        samples.append(s)
    inputs = torch.randn(2, 3, size, size)
    with torch.autocast('cpu', dtype=dtype):
        losses = model.loss(inputs, samples)
        total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    assert torch.isfinite(total.float())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    model.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        out = model.predict(inputs, samples)
    assert out[0].pred_sem_seg.data.shape == (1, size, size)
