"""The projects under projects/ (CRIS and ETRIS with SERA's parts mixed in):
their modules, configs, config swaps and one training step of the tiny
variants."""
import copy
import glob
import os.path as osp
import sys

import pytest
import torch

from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper, build_optim_wrapper  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.structures import TextFeatures  # noqa
from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # the configs import ``projects.<name>.<pkg>``
    sys.path.insert(0, ROOT)

from projects.cris_sera.cris_sera import CRISNeck  # noqa: E402
from projects.etris_sera.etris_sera import ETRISBridge  # noqa: E402

register_all_modules()

CRIS = osp.join(ROOT, 'projects', 'cris_sera', 'configs')
ETRIS = osp.join(ROOT, 'projects', 'etris_sera', 'configs')
# the DETRIS project has its own tests (tests/test_detris_project.py)
CONFIGS = sorted(
    p for name in ('cris_sera', 'etris_sera')
    for p in glob.glob(osp.join(ROOT, 'projects', name, 'configs', '*.py')))
TINY = [p for p in CONFIGS if p.endswith('_tiny_synthetic.py')]
VITB = [p for p in CONFIGS if '_vitb_' in osp.basename(p)]
# (base config, swap config, path of the one entry that differs)
SWAPS = [
    (osp.join(CRIS, 'cris_vitb_refcoco.py'),
     osp.join(CRIS, 'cris_sera-fusion_vitb_refcoco.py'), ('model', 'neck')),
    (osp.join(CRIS, 'cris_tiny_synthetic.py'),
     osp.join(CRIS, 'cris_sera-fusion_tiny_synthetic.py'), ('model', 'neck')),
    (osp.join(ETRIS, 'etris_vitb_refcoco.py'),
     osp.join(ETRIS, 'etris_sera_vitb_refcoco.py'),
     ('model', 'backbone', 'adapter')),
    (osp.join(ETRIS, 'etris_tiny_synthetic.py'),
     osp.join(ETRIS, 'etris_sera_tiny_synthetic.py'),
     ('model', 'backbone', 'adapter')),
]


def _rel(path):
    """``path`` relative to the repository root, with ``/`` separators."""
    return osp.relpath(path, ROOT).replace(osp.sep, '/')


def _load(path):
    """Load a config; a missing ``_base_`` file is a failure, not a skip."""
    return Config.fromfile(path)


def _random_init(model_cfg):
    return random_init_cfg(model_cfg, force=True)


def _build(model_cfg):
    """Build with random weights; an unregistered ``type=`` raises."""
    torch.manual_seed(0)
    return MODELS.build(_random_init(model_cfg))


def _text(b=2, length=5, channels=6, pad_from=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, length, channels, generator=g)
    pad = torch.zeros(b, length, dtype=torch.bool)
    pad[:, pad_from:] = True
    return TextFeatures(words, pad, torch.randn(b, channels, generator=g))


# ------------------------------------------------------------------ CRISNeck
def test_cris_neck_pyramid_and_equal_grids():
    neck = CRISNeck([8, 12, 16], 6, channels=16, top_channels=24,
                    low_channels=8)
    text = _text()
    pyramid = [torch.randn(2, 8, 8, 8), torch.randn(2, 12, 4, 4),
               torch.randn(2, 16, 2, 2)]
    assert neck(pyramid, text).shape == (2, 16, 4, 4)
    # ViT taps: three grids of one size, output at that size
    equal = [torch.randn(2, c, 5, 7) for c in (8, 12, 16)]
    assert neck(equal, text).shape == (2, 16, 5, 7)
    assert neck.channels == 16


def test_cris_neck_depends_on_the_sentence():
    torch.manual_seed(0)
    neck = CRISNeck([8, 8, 8], 6, channels=16, top_channels=16,
                    low_channels=8, sentence_act='tanh').eval()
    feats = [torch.randn(1, 8, 4, 4).expand(2, -1, -1, -1)
             for _ in range(3)]
    text = _text()  # two different sentences, same image
    out = neck(feats, text)
    assert not torch.allclose(out[0], out[1])
    same = TextFeatures(text.words, text.pad_mask,
                        text.sentence[:1].expand(2, -1))
    out_same = neck(feats, same)
    torch.testing.assert_close(out_same[0], out_same[1])
    # gradient reaches the sentence projection
    neck.train()
    neck(feats, text).sum().backward()
    assert neck.sentence_proj[0].weight.grad.abs().sum() > 0


def test_cris_neck_checks_inputs():
    neck = CRISNeck([8, 8, 8], 6, channels=16, top_channels=16,
                    low_channels=8)
    text = _text()
    with pytest.raises(ValueError, match='3 levels'):
        neck([torch.randn(2, 8, 4, 4)] * 2, text)
    with pytest.raises(ValueError, match=r'feats\[1\]'):
        neck([torch.randn(2, 8, 4, 4), torch.randn(2, 5, 4, 4),
              torch.randn(2, 8, 4, 4)], text)
    with pytest.raises(ValueError, match='text.sentence'):
        neck([torch.randn(2, 8, 4, 4)] * 3, _text(channels=7))
    with pytest.raises(ValueError, match='in_channels'):
        CRISNeck([8, 8], 6)
    with pytest.raises(ValueError, match='sentence_act'):
        CRISNeck([8, 8, 8], 6, sentence_act='gelu')


# -------------------------------------------------------------- ETRISBridge
def _bridge(**kw):
    torch.manual_seed(0)
    return ETRISBridge(32, 6, hidden_channels=8, num_heads=2, **kw).eval()


def _randomise_up(bridge):
    with torch.no_grad():
        bridge.up.weight.normal_(0, 0.5)
        bridge.up.bias.normal_(0, 0.5)


def test_etris_bridge_is_identity_at_init():
    bridge = _bridge()
    tokens = torch.randn(2, 1 + 3 * 4, 32)
    out = bridge(tokens, (3, 4), 1, _text())
    assert out.shape == tokens.shape
    assert torch.equal(out, tokens)
    assert all(p.requires_grad for p in bridge.parameters())


def test_etris_bridge_updates_patch_tokens_only():
    bridge = _bridge()
    _randomise_up(bridge)
    tokens = torch.randn(2, 1 + 3 * 4, 32)
    out = bridge(tokens, (3, 4), 1, _text())
    assert torch.equal(out[:, :1], tokens[:, :1])
    assert not torch.allclose(out[:, 1:], tokens[:, 1:])


def test_etris_bridge_respects_the_pad_mask():
    bridge = _bridge()
    _randomise_up(bridge)
    tokens = torch.randn(2, 12, 32)
    text = _text(pad_from=3)
    out = bridge(tokens, (3, 4), 0, text)
    # padded words changed: output unchanged
    words = text.words.clone()
    words[:, 3:] = torch.randn_like(words[:, 3:]) * 10
    out_pad = bridge(tokens, (3, 4), 0,
                     TextFeatures(words, text.pad_mask, text.sentence))
    torch.testing.assert_close(out_pad, out, rtol=1e-5, atol=1e-6)
    # a real word changed: output changes
    words = text.words.clone()
    words[:, 0] = words[:, 0] + 3.0
    out_word = bridge(tokens, (3, 4), 0,
                      TextFeatures(words, text.pad_mask, text.sentence))
    assert not torch.allclose(out_word, out)
    # a sample with only padding stays finite
    all_pad = torch.ones_like(text.pad_mask)
    out_empty = bridge(tokens, (3, 4), 0,
                       TextFeatures(text.words, all_pad, text.sentence))
    assert torch.isfinite(out_empty).all()


def test_etris_bridge_checks_inputs():
    bridge = _bridge()
    text = _text()
    with pytest.raises(ValueError, match='token count'):
        bridge(torch.randn(2, 13, 32), (3, 4), 0, text)
    with pytest.raises(ValueError, match='tokens must have shape'):
        bridge(torch.randn(2, 12, 31), (3, 4), 0, text)
    with pytest.raises(ValueError, match='text.words'):
        bridge(torch.randn(2, 12, 32), (3, 4), 0, _text(channels=5))
    with pytest.raises(ValueError, match='divisible'):
        ETRISBridge(32, 6, hidden_channels=10, num_heads=4)


# ------------------------------------------------------------------ configs
def test_project_layout():
    for name in ('cris_sera', 'etris_sera'):
        assert osp.isfile(osp.join(ROOT, 'projects', name, 'README.md'))
    assert osp.isfile(osp.join(ROOT, 'projects', 'README.md'))
    assert len(CONFIGS) == 14, [_rel(p) for p in CONFIGS]
    assert len(TINY) == 4 and len(VITB) == 5


@pytest.mark.parametrize('path', CONFIGS, ids=_rel)
def test_config_loads_and_imports_its_modules(path):
    cfg = _load(path)
    imports = cfg.custom_imports['imports']
    assert 'projects.cris_sera.cris_sera' in imports
    assert cfg.custom_imports['allow_failed_imports'] is False
    assert 'projects.cris_sera.cris_sera' in sys.modules
    if _rel(path).startswith('projects/etris_sera/'):
        assert 'projects.etris_sera.etris_sera' in imports
        assert 'projects.etris_sera.etris_sera' in sys.modules
    assert cfg.default_scope == 'sera_mm'
    assert MODELS.get(cfg.model.neck.type) is not None


def _without(cfg, path):
    d = copy.deepcopy(cfg.to_dict())
    node = d
    for key in path[:-1]:
        node = node[key]
    removed = node.pop(path[-1])
    return d, removed


@pytest.mark.parametrize('base,swap,path', SWAPS,
                         ids=[_rel(s[1]) for s in SWAPS])
def test_swap_config_changes_one_entry(base, swap, path):
    base_cfg, swap_cfg = _load(base), _load(swap)
    base_rest, base_entry = _without(base_cfg, path)
    swap_rest, swap_entry = _without(swap_cfg, path)
    assert base_rest == swap_rest
    assert base_entry['type'] != swap_entry['type']
    assert swap_entry['type'] in ('SERAFusion', 'SERAAdapter')
    # a leaf swap config is a few lines over its base
    with open(swap) as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip()
                 .startswith('#')]
    assert len(lines) <= 15


def test_cris_full_config_adds_adapters_at_full_lr():
    cfg = _load(osp.join(CRIS, 'cris_sera-full_vitb_refcoco.py'))
    assert cfg.model.neck.type == 'SERAFusion'
    assert cfg.model.backbone.adapter.type == 'SERAAdapter'
    assert tuple(cfg.model.backbone.adapter_indices) == (1, 3, 5, 7, 9, 11)
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert keys['backbone']['lr_mult'] == 0.1
    assert keys['backbone.adapters']['lr_mult'] == 1.0


# ------------------------------------------------------- tiny: build + step
def _samples(n=2, size=64):
    inputs, samples = [], []
    g = torch.Generator().manual_seed(0)
    texts = ['the red circle on the left', 'blue square at the bottom']
    for i in range(n):
        inputs.append(
            torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                          generator=g))
        s = SegDataSample()
        s.set_metainfo(
            dict(text=texts[i % 2], sent_id=i, ref_id=i, img_path=f'{i}.png',
                 img_shape=(size, size), pad_shape=(size, size),
                 ori_shape=(size, size), scale_factor=(1.0, 1.0),
                 img_padding_size=[0, 0, 0, 0], flip=False,
                 flip_direction=None, expr_type='attribute'))
        mask = torch.zeros(1, size, size, dtype=torch.long)
        mask[:, 8 + 8 * i:32 + 8 * i, 8:40] = 1
        s.gt_sem_seg = PixelData(data=mask)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def _assert_fully_trainable(backbone):
    """Full fine-tuning: everything that feeds an output trains; only the
    final norm, which no output uses, stays frozen."""
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert all(n.startswith('encoder.post_layernorm.') for n in frozen), frozen
    assert len(frozen) <= 2, frozen


def _module_types(model):
    return {type(m).__name__ for m in model.modules()}


@pytest.mark.parametrize('path', TINY, ids=_rel)
def test_tiny_config_builds_and_trains_one_step(path):
    cfg = _load(path)
    model = _build(cfg.model)
    name = osp.basename(path)
    neck_type = cfg.model.neck.type
    assert type(model.neck).__name__ == neck_type
    adapter_types = {type(a).__name__ for a in model.backbone.adapters
                     .values()}
    if name.startswith('cris'):
        assert len(model.backbone.adapters) == 0
        # full fine-tuning: everything that feeds an output trains; only
        # the parts the backbone documents as unused (final norm, blocks
        # after the last out index) are frozen
        _assert_fully_trainable(model.backbone)
        assert all(p.requires_grad for p in model.text_encoder.parameters())
    elif name.startswith('etris_sera'):
        assert adapter_types == {'SERAAdapter'}
    else:
        assert adapter_types == {'ETRISBridge'}
    if name.startswith('etris'):
        encoder = [p for n, p in model.backbone.named_parameters()
                   if not n.startswith('adapters.')]
        assert encoder and not any(p.requires_grad for p in encoder)
        assert not any(p.requires_grad
                       for p in model.text_encoder.parameters())
        assert all(p.requires_grad
                   for p in model.backbone.adapters.parameters())

    model.train()
    optim = OptimWrapper(
        torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3))
    before = {n: p.detach().clone() for n, p in model.named_parameters()
              if p.requires_grad}
    log_vars = model.train_step(_samples(), optim)
    assert 'loss' in log_vars and torch.isfinite(log_vars['loss'])
    assert any(k.startswith('loss_') for k in log_vars)
    changed = {n.split('.')[0] for n, p in model.named_parameters()
               if n in before and not torch.equal(p, before[n])}
    assert {'neck', 'decode_head'} <= changed
    if not name.startswith('cris'):
        moved = [n for n, p in model.backbone.adapters.named_parameters()
                 if not torch.equal(p, before['backbone.adapters.' + n])]
        assert moved, 'no adapter parameter was updated'


def test_cris_tiny_encoders_get_the_low_lr():
    cfg = _load(osp.join(CRIS, 'cris_tiny_synthetic.py'))
    model = _build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_lr = cfg.optim_wrapper.optimizer.lr
    lrs = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            lrs[names[id(p)].split('.')[0]] = group['lr']
    assert lrs['backbone'] == pytest.approx(0.1 * base_lr)
    assert lrs['text_encoder'] == pytest.approx(0.1 * base_lr)
    assert lrs['neck'] == pytest.approx(base_lr)
    assert lrs['decode_head'] == pytest.approx(base_lr)


# ------------------------------------------------ ViT-B: build, no forward
@pytest.mark.parametrize('path', VITB, ids=_rel)
def test_vitb_config_builds_with_random_init(path):
    cfg = _load(path)
    model = _build(cfg.model)
    name = osp.basename(path)
    assert type(model.neck).__name__ == cfg.model.neck.type
    assert model.backbone.out_channels == [768, 768, 768]
    adapters = model.backbone.adapters
    if name.startswith('cris_vitb') or name.startswith('cris_sera-fusion'):
        assert len(adapters) == 0
        _assert_fully_trainable(model.backbone)
    elif name.startswith('cris_sera-full'):
        assert sorted(int(k) for k in adapters) == [1, 3, 5, 7, 9, 11]
        assert {type(a).__name__ for a in adapters.values()} == {
            'SERAAdapter'}
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        base_lr = cfg.optim_wrapper.optimizer.lr
        ids = {id(p) for p in adapters.parameters()}
        for group in wrapper.optimizer.param_groups:
            if any(id(p) in ids for p in group['params']):
                assert group['lr'] == pytest.approx(base_lr)
    else:  # ETRIS and ETRIS + SERA
        assert sorted(int(k) for k in adapters) == [3, 7, 11]
        want = 'SERAAdapter' if 'etris_sera' in name else 'ETRISBridge'
        assert {type(a).__name__ for a in adapters.values()} == {want}
        assert not any(p.requires_grad
                       for p in model.text_encoder.parameters())
    del model
