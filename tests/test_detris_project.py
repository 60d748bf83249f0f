"""projects/detris_sera: DETRIS's parts, the SERA paper's model built on
them, their configs (DETRIS-B's recipe, the paper's changes only) and one
training step of the tiny and main-job variants."""
import copy
import glob
import os.path as osp
import sys

import pytest
import torch

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.structures import TextFeatures  # noqa
from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # the configs import ``projects.<name>.<pkg>``
    sys.path.insert(0, ROOT)

from projects.detris_sera.detris_sera import (  # noqa: E402
    DenseMultiScaleBranches, DETRISNeck, DETRISTextAdapter,
    DETRISVisualAdapter, RoutedExpertBlock, SERAPaperDenseAdapter)

register_all_modules()

CFG = osp.join(ROOT, 'projects', 'detris_sera', 'configs')
DETRIS = osp.join(CFG, 'detris_dinov2-b_refcoco.py')
PAPER = osp.join(CFG, 'sera-paper_dinov2-b_refcoco.py')
TINY = osp.join(CFG, 'detris_tiny_synthetic.py')
TINY_PAPER = osp.join(CFG, 'sera-paper_tiny_synthetic.py')
MAIN = osp.join(ROOT, 'configs', 'sera',
                'sera_mnv2-minilm_synthetic_600it.py')
MINI = {
    'detris': osp.join(CFG, 'detris_mnv2-minilm_synthetic.py'),
    'adapter': osp.join(CFG, 'sera-paper-adapter_mnv2-minilm_synthetic.py'),
    'both': osp.join(CFG, 'sera-paper_mnv2-minilm_synthetic.py'),
}


def _text(b=2, length=6, channels=12, pad_from=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, length, channels, generator=g)
    pad = torch.zeros(b, length, dtype=torch.bool)
    pad[:, pad_from:] = True
    return TextFeatures(words, pad, torch.randn(b, channels, generator=g))


def _build(cfg_model):
    torch.manual_seed(0)
    return MODELS.build(random_init_cfg(cfg_model, force=True))


def _samples(n=2, size=64):
    texts = ['the red circle on the left', 'the largest square']
    inputs, samples = [], []
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        inputs.append(torch.rand(3, size, size, generator=g) * 255)
        s = SegDataSample(metainfo=dict(
            text=texts[i % 2], img_shape=(size, size), ori_shape=(size, size),
            pad_shape=(size, size), img_padding_size=[0, 0, 0, 0]))
        mask = torch.zeros(1, size, size, dtype=torch.long)
        mask[:, 8 + 4 * i:40, 10:44] = 1
        s.gt_sem_seg = PixelData(data=mask)
        samples.append(s)
    return inputs, samples


# ------------------------------------------------------------------ parts
def test_dense_branches_widths_and_residual():
    branches = DenseMultiScaleBranches(128, dims=2)
    widths = [branches.branch1.conv.out_channels,
              branches.branch2[0].conv.out_channels,
              branches.branch2[1].conv.out_channels,
              branches.branch3[0].conv.out_channels,
              branches.branch3[1].conv.out_channels]
    # DETRIS's dense aligner at width 128: 1x1 -> 64; 1x1 -> 8 -> 3x3 -> 32;
    # 1x1 -> 8 -> 5x5 -> 32
    assert widths == [64, 8, 32, 8, 32]
    assert branches.branch2[0].conv.in_channels == 128 + 64
    assert branches.branch3[0].conv.in_channels == 128 + 64 + 32
    assert branches.branch3[1].conv.kernel_size == (5, 5)
    x = torch.randn(2, 128, 5, 6)
    branches.eval()
    out = branches(x)
    assert out.shape == x.shape
    plain = DenseMultiScaleBranches(128, dims=2, residual=False)
    plain.load_state_dict(branches.state_dict())
    plain.eval()
    torch.testing.assert_close(out - plain(x), x)
    text_branches = DenseMultiScaleBranches(64, dims=1)
    assert text_branches(torch.randn(2, 64, 7)).shape == (2, 64, 7)
    with pytest.raises(ValueError, match='multiple of 16'):
        DenseMultiScaleBranches(40)
    with pytest.raises(ValueError, match='d=128'):
        branches(torch.randn(2, 64, 5, 6))


def test_visual_adapter_shapes_init_and_errors():
    torch.manual_seed(0)
    adapter = DETRISVisualAdapter(32, 12, hidden_channels=16,
                                  num_heads=2).eval()
    tokens = torch.randn(2, 5 + 12, 32)
    text = _text()
    delta = adapter.delta(tokens, (3, 4), 5, text)
    assert delta.shape == tokens.shape
    # DETRIS's adapters are not identities at initialisation (Kaiming init
    # of fc2): the after-block form moves every token, prefix included
    out = adapter(tokens, (3, 4), 5, text)
    torch.testing.assert_close(out, tokens + 0.2 * delta)
    assert (out - tokens).abs().amax(dim=-1).min() > 0
    # zero_init makes it an exact identity
    zero = DETRISVisualAdapter(32, 12, hidden_channels=16, num_heads=2,
                               zero_init=True)
    assert torch.equal(zero(tokens, (3, 4), 5, text), tokens)
    with pytest.raises(ValueError, match='token count'):
        adapter.delta(tokens, (3, 5), 5, text)
    with pytest.raises(ValueError, match='text.words'):
        adapter.delta(tokens, (3, 4), 5, _text(channels=7))


def test_visual_adapter_masks_padded_words():
    torch.manual_seed(0)
    adapter = DETRISVisualAdapter(32, 12, hidden_channels=16,
                                  num_heads=2).eval()
    tokens = torch.randn(2, 12, 32)
    text = _text(pad_from=3)
    words = text.words.clone()
    words[:, 3:] = 100.0  # padded positions change, real ones do not
    a = adapter.delta(tokens, (3, 4), 0, text)
    b = adapter.delta(tokens, (3, 4), 0,
                      TextFeatures(words, text.pad_mask, text.sentence))
    torch.testing.assert_close(a, b)


def test_paper_adapter_adds_routed_experts_to_the_rich_grid():
    torch.manual_seed(0)
    adapter = SERAPaperDenseAdapter(32, 12, hidden_channels=16,
                                    num_heads=2).eval()
    assert adapter.router.condition == 'visual'
    assert adapter.router.top_k is None  # soft routing in the backbone
    assert adapter.router.expert_names == ['spatial', 'boundary']
    grid = torch.randn(2, 16, 3, 4)
    rich = adapter.branches(grid)
    text = _text()
    out = adapter.refine(grid, rich, text)
    w = adapter.router.last_weights  # (B, 2), rows sum to 1
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    s, b = adapter.experts[0](grid), adapter.experts[1](grid)
    expected = rich + 0.25 * w[:, 0, None, None, None] * s + \
        0.15 * w[:, 1, None, None, None] * b
    torch.testing.assert_close(out, expected)
    # the rest is DETRIS's adapter: same shapes, same interface
    tokens = torch.randn(2, 12, 32)
    assert adapter.delta(tokens, (3, 4), 0, text).shape == tokens.shape


def test_text_adapter_keeps_the_first_token_out_of_the_branches():
    torch.manual_seed(0)
    adapter = DETRISTextAdapter(24, hidden_channels=16).eval()
    x = torch.randn(2, 6, 24)
    out = adapter(x)
    assert out.shape == x.shape
    # the first token's output depends only on itself (no conv over it)
    y = x.clone()
    y[:, 1:] = torch.randn(2, 5, 24)
    torch.testing.assert_close(adapter(y)[:, 0], out[:, 0])
    with pytest.raises(ValueError, match='L >= 2'):
        adapter(torch.randn(2, 1, 24))


def test_routed_expert_block_is_identity_at_init_and_routes_top2():
    torch.manual_seed(0)
    block = RoutedExpertBlock(16, 12).train()
    x = torch.randn(3, 16, 4, 5)
    out = block(x, _text(b=3))
    # the paper's four experts are residual identities at initialisation
    # and top-2 gates are renormalised to 1
    torch.testing.assert_close(out, x)
    gates = block.router.last_gates
    assert ((gates > 0).sum(1) == 2).all()
    torch.testing.assert_close(gates.sum(1), torch.ones(3))
    assert block.router.noise == 'learned'
    assert block.expert_names == ['paper_spatial', 'paper_context',
                                  'paper_boundary', 'paper_shape']


def test_neck_sizes_and_errors():
    torch.manual_seed(0)
    neck = DETRISNeck([8, 12, 16], 12, channels=16, strides=(2, 1, 2),
                      num_heads=2).eval()
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 12, 4, 4),
             torch.randn(2, 16, 2, 2)]
    assert neck(feats, _text()).shape == (2, 16, 4, 4)
    # the sentence matters (the gates modulate every level)
    other = _text(seed=1)
    assert not torch.allclose(neck(feats, _text()), neck(feats, other))
    flat = DETRISNeck([8, 12, 16], 12, channels=16, num_heads=2).eval()
    with pytest.raises(ValueError, match='share one size'):
        flat(feats, _text())
    with pytest.raises(ValueError, match='3 entries'):
        DETRISNeck([8, 12], 12)


# --------------------------------------------------- placement in encoders
def _tiny_backbone(scale, adapter_indices=(1, )):
    cfg = Config.fromfile(TINY).model.backbone.to_dict()
    cfg.update(adapter_scale=scale, adapter_indices=adapter_indices,
               text_channels=32,
               out_indices=(1, ), final_norm=False)
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def test_dinov2_adapter_sits_beside_the_mlp_under_the_layer_scale():
    img = torch.randn(2, 3, 64, 64)
    words = torch.randn(2, 17, 32)
    text = TextFeatures(words, torch.zeros(2, 17, dtype=torch.bool),
                        torch.randn(2, 32))
    with_adapter = _tiny_backbone(0.2)
    without = _tiny_backbone(0.0)
    const = torch.full((1, 1, 32), 0.5)
    for m in (with_adapter, without):
        m.adapters['1'].delta = lambda t, hw, n, txt: const.expand_as(t)
    grid_a = with_adapter(img, text)[0]
    grid_b = without(img, text)[0]
    gamma = with_adapter.encoder.encoder.layer[1].layer_scale2.lambda1
    expected = 0.2 * 0.5 * gamma.detach()[None, :, None, None]
    torch.testing.assert_close(grid_a - grid_b, expected.expand_as(grid_a))
    # no after-block adapter ran: block 0 is untouched by the hook
    with pytest.raises(ValueError, match='needs text features'):
        with_adapter(img, None)


def test_text_adapters_read_the_post_attention_stream_and_deep_copy():
    cfg = Config.fromfile(TINY).model.text_encoder.to_dict()
    torch.manual_seed(0)
    enc = MODELS.build(cfg).eval()
    texts = ['the red dog', 'a cat on the left']
    base = copy.deepcopy(cfg['encoder'])
    torch.manual_seed(0)
    bare = MODELS.build(base).eval()
    bare.load_state_dict(enc.encoder.state_dict())
    a, b = enc(texts), bare(texts)
    assert not torch.allclose(a.words, b.words)
    torch.testing.assert_close(a.pad_mask, b.pad_mask)
    # the adapter's input is the input of layer_norm2 of its layer
    seen = {}
    layer = enc.encoder.model.text_model.encoder.layers[1]
    layer.layer_norm2.register_forward_pre_hook(
        lambda m, args: seen.__setitem__('ln2', args[0].clone()))
    enc.adapters['1'].register_forward_pre_hook(
        lambda m, args: seen.__setitem__('adapter', args[0].clone()))
    enc(texts)
    torch.testing.assert_close(seen['adapter'], seen['ln2'])
    # a deep copy calls its own adapters: zeroing the copy's output layer
    # gives the bare encoder's features, the original keeps its own
    twin = copy.deepcopy(enc)
    torch.nn.init.zeros_(twin.adapters['1'].fc2.weight)
    torch.nn.init.zeros_(twin.adapters['1'].fc2.bias)
    torch.testing.assert_close(twin(texts).words, b.words)
    torch.testing.assert_close(enc(texts).words, a.words)
    with pytest.raises(ValueError, match='cache'):
        MODELS.build(dict(cfg, encoder=dict(cfg['encoder'], cache_size=8)))


# ---------------------------------------------------------------- configs
def test_detris_config_is_detris_b_recipe():
    cfg = Config.fromfile(DETRIS)
    m = cfg.model
    assert cfg.data_preprocessor['size'] == (448, 448)
    assert m.text_encoder.encoder.max_length == 17
    assert m.text_encoder.encoder.trainable == 'none'
    assert m.text_encoder.encoder.project_words is False
    assert tuple(m.text_encoder.adapter_indices) == (1, 3, 5, 7, 9, 11)
    assert m.text_encoder.adapter.hidden_channels == 64
    assert m.backbone.adapter.type == 'DETRISVisualAdapter'
    assert m.backbone.adapter.hidden_channels == 128
    assert tuple(m.backbone.adapter_indices) == (1, 3, 5, 7, 9, 11)
    assert tuple(m.backbone.out_indices) == (4, 8, 11)
    assert m.backbone.config.num_register_tokens == 4
    assert m.backbone.trainable == 'none'
    assert m.neck.channels == 512 and tuple(m.neck.strides) == (1, 1, 1)
    head = m.decode_head
    assert (head.num_layers, head.num_heads, head.ffn_channels,
            head.dropout, head.proj_channels) == (3, 8, 512, 0.1, 256)
    assert [l_['type'] for l_ in head.loss_decode] == ['CrossEntropyLoss']
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'Adam' and opt.optimizer.lr == 1e-4
    assert opt.optimizer.weight_decay == 0.0
    assert 'clip_grad' not in opt or opt.clip_grad is None
    sched, = cfg.param_scheduler
    assert sched.milestones == [35, 55] and sched.gamma == 0.1
    assert cfg.train_cfg.max_epochs == 65
    assert cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.train_dataloader.batch_size * 4 == 32
    assert cfg.sync_bn == 'torch'
    assert not any(t['type'] == 'PhotoMetricDistortion'
                   for t in cfg.train_dataloader.dataset.pipeline)
    # DETRIS pads the letterbox with CLIP's mean colour (0 once normalised)
    box = [t for t in cfg.train_dataloader.dataset.pipeline
           if t['type'] == 'Letterbox'][0]
    assert [round(v) for v in box['pad_val'][::-1]] == [
        round(v) for v in cfg.data_preprocessor['mean']]
    umd = Config.fromfile(osp.join(CFG, 'detris_dinov2-b_refcocog-umd.py'))
    assert umd.model.text_encoder.encoder.max_length == 22
    assert umd.test_dataloader.dataset.split_by == 'umd'
    google = Config.fromfile(
        osp.join(CFG, 'detris_dinov2-b_refcocog-google.py'))
    assert google.test_dataloader.dataset.split == 'val'
    large = Config.fromfile(osp.join(CFG, 'detris_dinov2-l_refcoco.py'))
    assert tuple(large.model.backbone.adapter_indices) == (2, 6, 10, 14, 18,
                                                           22)
    assert tuple(large.model.backbone.out_indices) == (8, 16, 23)
    assert large.model.backbone.config.hidden_size == 1024
    assert large.train_cfg.max_epochs == 50
    assert large.param_scheduler[0].milestones == [35]
    plus = Config.fromfile(osp.join(CFG, 'detris_dinov2-b_refcoco+.py'))
    assert plus.train_dataloader.dataset.data_root == 'data/refcoco+'


def _flat(d, prefix=()):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + (k, )))
        else:
            out[prefix + (k, )] = v
    return out


def test_paper_config_changes_only_the_named_parts():
    detris = _flat(Config.fromfile(DETRIS).to_dict())
    paper = _flat(Config.fromfile(PAPER).to_dict())
    changed = {k[:3] if k[:2] == ('model', 'backbone') else k
               for k in set(detris) ^ set(paper) |
               {k for k in detris if k in paper and detris[k] != paper[k]}}
    allowed = {
        ('model', 'backbone', 'adapter'), ('model', 'backbone', 'trainable'),
        ('model', 'text_encoder', 'encoder', 'trainable'),
        ('model', 'neck', 'level_block', 'type'),
        ('model', 'balance_loss_weight'), ('model', 'z_loss_weight'),
        ('model', 'assign_loss_weight'), ('auto_scale_lr', 'base_batch_size')
    }
    assert changed == allowed
    assert paper[('auto_scale_lr', 'base_batch_size')] == 16


def _tree(model):
    return {name: type(m).__name__ for name, m in model.named_modules()}


def _tree_diff_roots(a, b):
    diff = {n for n in set(a) ^ set(b)} | {
        n for n in set(a) & set(b) if a[n] != b[n]}
    roots = set()
    for n in diff:
        parts = n.split('.')
        roots.add('.'.join(parts[:3]))
    return roots


@pytest.mark.parametrize('base,paper', [(TINY, TINY_PAPER),
                                        (DETRIS, PAPER)],
                         ids=['tiny', 'refcoco'])
def test_paper_model_differs_from_detris_in_adapters_and_fusion_only(
        base, paper):
    a = _build(Config.fromfile(base).model)
    b = _build(Config.fromfile(paper).model)
    roots = _tree_diff_roots(_tree(a), _tree(b))
    adapters = {f'backbone.adapters.{i}' for i in a.backbone.adapters}
    assert roots == adapters | {'neck.level_blocks.0', 'neck.level_blocks.1',
                                'neck.level_blocks.2'}
    for key in a.backbone.adapters:
        assert type(a.backbone.adapters[key]).__name__ == \
            'DETRISVisualAdapter'
        assert type(b.backbone.adapters[key]).__name__ == \
            'SERAPaperDenseAdapter'
    if base == DETRIS:
        enc = sum(p.numel() for p in a.backbone.encoder.parameters())
        # DETRIS trains none of the encoders; the paper norm/bias (< 1%)
        assert not any(p.requires_grad
                       for p in a.backbone.encoder.parameters())
        tuned = sum(p.numel() for p in b.backbone.encoder.parameters()
                    if p.requires_grad)
        assert 0 < tuned < 0.01 * enc


@pytest.mark.parametrize('path', [TINY, TINY_PAPER],
                         ids=['detris', 'sera-paper'])
def test_tiny_config_trains_one_step_and_predicts(path):
    cfg = Config.fromfile(path)
    model = _build(cfg.model)
    inputs, samples = _samples()
    data = model.data_preprocessor(dict(inputs=inputs,
                                        data_samples=samples), True)
    optim = build_optim_wrapper(
        model, dict(type='OptimWrapper',
                    optimizer=dict(type='Adam', lr=1e-3)))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()
              if p.requires_grad}
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    assert torch.isfinite(total)
    optim.update_params(total)
    moved = [n for n, p in model.named_parameters()
             if p.requires_grad and not torch.equal(p, before[n])]
    assert any(n.startswith('backbone.adapters.') for n in moved)
    assert any(n.startswith('text_encoder.adapters.') for n in moved)
    assert not any(n.startswith('backbone.encoder.') for n in before) or \
        path == TINY_PAPER
    if path == TINY_PAPER:
        assert {'loss_balance', 'loss_z', 'loss_assign'} <= set(losses)
    model.eval()
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])
    assert out[0].pred_sem_seg.data.shape == (1, 64, 64)
    routing = out[0].metainfo['routing']
    if path == TINY_PAPER:
        assert 'neck.level_blocks.0.router' in routing
        assert 'backbone.adapters.1.router' in routing
    else:
        assert routing == {}


# ------------------------------------------- the main job's miniature rows
def _lines(path):
    with open(path) as f:
        return [ln for ln in f if ln.strip() and
                not ln.lstrip().startswith('#')]


def test_miniature_rows_keep_the_main_job_and_change_one_part_each():
    main = Config.fromfile(MAIN).to_dict()
    cfgs = {k: Config.fromfile(p).to_dict() for k, p in MINI.items()}
    for key, cfg in cfgs.items():
        for k in set(main) - {'model', 'custom_imports'}:
            assert cfg[k] == main[k], (key, k)
    d, a, b = (_flat(cfgs[k]['model']) for k in ('detris', 'adapter',
                                                 'both'))
    da = {k[:3] for k in set(d) ^ set(a) |
          {k for k in d if k in a and d[k] != a[k]}}
    assert da == {('backbone', 'adapter', 'type'),
                  ('backbone', 'adapter', 'router'),
                  ('balance_loss_weight', ), ('z_loss_weight', ),
                  ('assign_loss_weight', )}
    ab = {k for k in set(a) ^ set(b) | {k for k in a if k in b and
                                         a[k] != b[k]}}
    assert ab == {('neck', 'level_block', 'type')}
    assert len(_lines(MINI['adapter'])) <= 16
    assert len(_lines(MINI['both'])) <= 3


@pytest.mark.parametrize('key', sorted(MINI))
def test_miniature_rows_build_and_step(key):
    cfg = Config.fromfile(MINI[key])
    model = _build(cfg.model)
    inputs, samples = _samples(2, 160)
    data = model.data_preprocessor(dict(inputs=inputs,
                                        data_samples=samples), True)
    model.train()
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    total.backward()
    assert torch.isfinite(total)
    names = {type(m).__name__ for m in model.modules()}
    assert 'DETRISNeck' in names and 'DETRISTextEncoder' in names
    assert ('SERAPaperDenseAdapter' in names) == (key != 'detris')
    assert ('RoutedExpertBlock' in names) == (key == 'both')


def test_every_project_config_loads():
    paths = sorted(glob.glob(osp.join(CFG, '*.py')))
    assert len(paths) == 14
    for path in paths:
        cfg = Config.fromfile(path)
        assert 'projects.detris_sera.detris_sera' in \
            cfg.custom_imports['imports']
        assert MODELS.get(cfg.model.neck.type) is not None


def test_dinov2_backbone_refuses_activation_checkpointing_with_adapters():
    cfg = Config.fromfile(TINY).model.backbone.to_dict()
    cfg.update(text_channels=32, with_cp=True)
    with pytest.raises(ValueError, match='with_cp'):
        MODELS.build(cfg)
