"""The projects' configs on the main synthetic job's encoders and schedule:
each is a few lines over its base, keeps the main job's schedule, data and
seed, swaps only the parts it names, and trains a step."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.structures import PixelData

from mmengine.config import Config  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
register_all_modules()

MAIN = osp.join(ROOT, 'configs', 'sera',
                'sera_mnv2-minilm_synthetic_600it.py')
CRIS = osp.join(ROOT, 'projects', 'cris_sera', 'configs')
ETRIS = osp.join(ROOT, 'projects', 'etris_sera', 'configs')
SYN = {
    'cris': osp.join(CRIS, 'cris_mnv2-minilm_synthetic.py'),
    'cris_fusion': osp.join(CRIS, 'cris_sera-fusion_mnv2-minilm_synthetic.py'),
    'cris_full': osp.join(CRIS, 'cris_sera-full_mnv2-minilm_synthetic.py'),
    'etris': osp.join(ETRIS, 'etris_mnv2-minilm_synthetic.py'),
    'etris_sera': osp.join(ETRIS, 'etris_sera_mnv2-minilm_synthetic.py'),
}
# (base, swap, model entries allowed to differ)
SWAPS = [('cris', 'cris_fusion', {'neck', 'decode_head'}),
         ('cris_fusion', 'cris_full', {'backbone'}),
         ('etris', 'etris_sera', {'backbone'})]
# the parts each model must (and must not) contain
PARTS = {
    'cris': ({'CRISNeck'}, {'SERAFusion', 'SERAAdapter', 'ETRISBridge'}),
    'cris_fusion': ({'SERAFusion'}, {'CRISNeck', 'SERAAdapter'}),
    'cris_full': ({'SERAFusion', 'SERAAdapter'}, {'CRISNeck'}),
    'etris': ({'CRISNeck', 'ETRISBridge'}, {'SERAAdapter', 'SERAFusion'}),
    'etris_sera': ({'CRISNeck', 'SERAAdapter'}, {'ETRISBridge'}),
}


def _cfg(key):
    return Config.fromfile(SYN[key])


@pytest.mark.parametrize('key', sorted(SYN))
def test_keeps_the_main_job_schedule_data_and_seed(key):
    main, cfg = Config.fromfile(MAIN).to_dict(), _cfg(key).to_dict()
    for k in set(main) - {'model', 'custom_imports'}:
        assert cfg[k] == main[k], k
    assert cfg['model']['text_encoder'] == main['model']['text_encoder']
    with open(SYN[key]) as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip()
                 .startswith('#')]
    assert len(lines) <= 20


@pytest.mark.parametrize('base,swap,allowed', SWAPS,
                         ids=[s[1] for s in SWAPS])
def test_swap_changes_only_the_named_parts(base, swap, allowed):
    a, b = _cfg(base).to_dict()['model'], _cfg(swap).to_dict()['model']
    differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert differ and differ <= allowed


def _samples(n, size):
    texts = ['the red circle on the left', 'the second square']
    out = []
    for i in range(n):
        s = SegDataSample(metainfo=dict(
            text=texts[i % 2], img_shape=(size, size),
            ori_shape=(size, size), pad_shape=(size, size)))
        gt = torch.zeros(1, size, size, dtype=torch.long)
        gt[:, 40:90, 30:100] = 1
        s.gt_sem_seg = PixelData(data=gt)
        out.append(s)
    return out


@pytest.mark.parametrize('key', sorted(SYN))
def test_builds_and_trains_one_step(key):
    torch.manual_seed(0)
    model = MODELS.build(random_init_cfg(_cfg(key).model))
    types = {type(m).__name__ for m in model.modules()}
    need, forbid = PARTS[key]
    assert need <= types and not (forbid & types)
    model.train()
    losses = model.loss(torch.randn(2, 3, 160, 160), _samples(2, 160))
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    total.backward()
    assert [n for n, p in model.named_parameters()
            if p.requires_grad and p.grad is None] == []
    with torch.no_grad():
        model.eval()
        logits = model._forward(torch.randn(1, 3, 160, 160),
                                _samples(1, 160))
    assert logits.shape[-2:] == (40, 40)  # every row predicts at 1/4
