"""What distributed CUDA training needs, checked on CPU: every trainable
parameter of every shipped model gets a gradient (DDP with
find_unused_parameters=False), SyncBN falls back cleanly without a CUDA
process group, the text cache stays in bounded CPU memory, autocast runs."""
import glob
import logging
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.structures import PixelData

from mmengine.config import Config  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # configs may import projects.* modules
    sys.path.insert(0, ROOT)
register_all_modules()

LEAF_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'sera', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'sera', 'ablations', '*.py')))
SMALL_VIT = dict(hidden_size=32, intermediate_size=64,
                 num_attention_heads=2)
SMALL_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2)


def _shrink(model_cfg):
    """Random weights and a narrow geometry (same depth, block indices and
    parts), so every config trains a step in seconds on CPU."""
    cfg = random_init_cfg(model_cfg, force=True)
    bb = cfg['backbone']
    if isinstance(bb.get('config'), dict):
        bb['config'].update(SMALL_VIT)
        if 'projection_dim' in bb['config']:
            bb['config']['projection_dim'] = 32
    te = cfg['text_encoder']
    if isinstance(te.get('config'), dict):
        te['config'].update(SMALL_TEXT)
        if 'projection_dim' in te['config']:
            te['config']['projection_dim'] = 32
    return cfg


def _input_size(model) -> int:
    bb = model.backbone
    patch = getattr(bb, 'patch_size', None)
    return 4 * patch if patch else 64


def _samples(b, size, texts=None):
    texts = texts or ['the red circle on the left', 'the second square']
    out = []
    for i in range(b):
        gt = torch.zeros(1, size, size, dtype=torch.long)
        gt[:, size // 4:size // 2, size // 4:3 * size // 4] = 1
        s = SegDataSample(metainfo=dict(
            text=texts[i % len(texts)], img_shape=(size, size),
            ori_shape=(size, size), pad_shape=(size, size),
            expr_type='spatial'))
        s.gt_sem_seg = PixelData(data=gt)
        out.append(s)
    return out


def _train_step(model, b=4):
    size = _input_size(model)
    model.train()
    torch.manual_seed(0)
    losses = model.loss(torch.randn(b, 3, size, size), _samples(b, size))
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    return losses


def _no_grad(model):
    return [n for n, p in model.named_parameters()
            if p.requires_grad and p.grad is None]


@pytest.mark.parametrize(
    'config', LEAF_CONFIGS,
    ids=[osp.relpath(c, osp.join(ROOT, 'configs')) for c in LEAF_CONFIGS])
def test_every_trainable_parameter_gets_a_gradient(config):
    cfg = Config.fromfile(config)
    model = MODELS.build(_shrink(cfg.model))
    losses = _train_step(model)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert _no_grad(model) == []


def test_dinov2_final_norm_unused_when_last_block_not_returned():
    from sera_mm.models.backbones import DINOv2Backbone
    cfg = dict(SMALL_VIT, num_hidden_layers=4, patch_size=14, image_size=56,
               num_register_tokens=0)
    bb = DINOv2Backbone(config=cfg, out_indices=(1, 2), final_norm=True,
                        trainable='norm_bias')
    assert not any(p.requires_grad
                   for p in bb.encoder.layernorm.parameters())
    out = bb(torch.randn(1, 3, 56, 56))
    sum(o.sum() for o in out).backward()
    assert [n for n, p in bb.named_parameters()
            if p.requires_grad and p.grad is None] == []
    # returned last block: the norm feeds it and trains
    bb = DINOv2Backbone(config=cfg, out_indices=(1, 3), final_norm=True,
                        trainable='norm_bias')
    assert all(p.requires_grad for p in bb.encoder.layernorm.parameters())


def test_mobilenet_blocks_after_the_last_tap_are_frozen():
    from sera_mm.models.backbones import MobileNetV2Backbone
    bb = MobileNetV2Backbone(pretrained=None, out_indices=(6, 13),
                             trainable='norm_bias')
    assert not any(p.requires_grad
                   for b in bb.encoder.features[14:] for p in b.parameters())
    out = bb(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in out).backward()
    assert [n for n, p in bb.named_parameters()
            if p.requires_grad and p.grad is None] == []


def test_syncbn_comes_from_mmcv_and_runs_without_a_process_group():
    """norm_cfg=dict(type='SyncBN') builds torch's SyncBatchNorm through
    mmcv's registry in the head and the neck; without a process group it
    normalises like BatchNorm (a CPU run of a GPU config), and the CPU
    launchers turn it into BN before a gloo group exists."""
    from sera_mm.models.heads import SERAHead
    from sera_mm.models.necks import SERAFusion
    from sera_mm.structures import TextFeatures
    head = SERAHead(in_channels=16, channels=16, text_channels=8,
                    num_layers=1, num_heads=2,
                    norm_cfg=dict(type='SyncBN'))
    neck = SERAFusion(in_channels=[16], text_channels=8, channels=16,
                      num_heads=2, norm_cfg=dict(type='SyncBN'))
    for part in (head, neck):
        assert any(isinstance(m, nn.SyncBatchNorm) for m in part.modules())
    text = TextFeatures(torch.randn(2, 3, 8), torch.zeros(2, 3, dtype=bool),
                        torch.randn(2, 8))
    fused = neck([torch.randn(2, 16, 4, 4)], text)
    logits = head((fused, text))
    assert tuple(logits.shape) == (2, 1, 16, 16)
    bn = head.input_proj.bn
    ref = nn.BatchNorm2d(16)
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(2, 16, 4, 4)
    assert torch.allclose(bn(x), ref(x), atol=1e-6)


def test_text_cache_lives_on_cpu_and_is_bounded_in_bytes():
    from sera_mm.models.text_encoders.base_text_encoder import \
        BaseTextEncoder

    class _Enc(BaseTextEncoder, nn.Module):
        def __init__(self):
            nn.Module.__init__(self)
            self.lin = nn.Linear(4, 8)
            self.lin.requires_grad_(False)
            self.embed_dim = 8
            self._init_text_state(5)

        def encode(self, texts):
            from sera_mm.models.text_encoders.text_features import \
                TextFeatures
            b = len(texts)
            x = torch.tensor([[float(len(t))] * 4 for t in texts])
            s = self.lin(x)
            return TextFeatures(words=s[:, None].repeat(1, 5, 1),
                                pad_mask=torch.zeros(b, 5, dtype=torch.bool),
                                sentence=s)

    enc = _Enc()
    row = 5 * 8 * 4 + 5 * 1 + 8 * 4  # words + pad_mask + sentence bytes
    enc.set_cache_size(100, max_bytes=3 * row)
    out = enc(['a', 'bb', 'ccc', 'dddd'])
    assert enc.cache_bytes == 3 * row and list(enc._cache) == [
        'bb', 'ccc', 'dddd']
    assert all(t.device.type == 'cpu' for r in enc._cache.values()
               for t in r)
    again = enc(['a', 'bb', 'ccc', 'dddd'])
    for x, y in zip(out, again):
        assert torch.equal(x, y)
    enc.set_cache_size(100, max_bytes=0)
    enc(['a'])
    assert enc.cache_bytes == 0 and len(enc._cache) == 0
    with pytest.raises(ValueError, match='max_bytes'):
        enc.set_cache_size(1, max_bytes=-1)


def test_tiny_config_trains_under_autocast():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sera',
                                   'sera_tiny_synthetic.py'))
    model = MODELS.build(random_init_cfg(cfg.model, force=True))
    size = 64
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(torch.randn(2, 3, size, size),
                            _samples(2, size))
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all()
                         for g in grads)
