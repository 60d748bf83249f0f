"""The SERA paper's expert design: adapter experts, SERAPaperAdapter, the
four SERA-Fusion experts and the 'paper' ablation config."""
import copy
import math
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmengine.config import Config  # noqa: E402

from sera_mm.models.adapters import (PaperAdapterBoundaryExpert,  # noqa: E402
                                     PaperAdapterSpatialExpert,
                                     PaperMultiScaleBranches, SERAAdapter,
                                     SERAPaperAdapter, build_experts)
from sera_mm.models.necks import (PaperBoundaryFusionExpert,  # noqa: E402
                                  PaperContextFusionExpert,
                                  PaperShapeFusionExpert,
                                  PaperSpatialFusionExpert,
                                  build_fusion_experts)
from sera_mm.models.routers import ExpertRouter  # noqa: E402
from sera_mm.structures import TextFeatures  # noqa
from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
register_all_modules()

B, C, CT, D, L = 2, 32, 24, 16, 6
H, W = 5, 4
ADAPTER_EXPERTS = ['paper_spatial', 'paper_boundary', 'paper_multiscale']
FUSION_EXPERTS = ['paper_spatial', 'paper_context', 'paper_boundary',
                  'paper_shape']
SOBEL_X = [[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]]
SOBEL_Y = [[-1., -2., -1.], [0., 0., 0.], [1., 2., 1.]]
LAPLACIAN = [[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]]
BLUR = [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16],
        [1 / 16, 2 / 16, 1 / 16]]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _text(seed: int = 0, batch: int = B) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    pad = torch.zeros(batch, L, dtype=torch.bool)
    pad[0, 4:] = True
    return TextFeatures(
        torch.randn(batch, L, CT, generator=g), pad,
        torch.randn(batch, CT, generator=g))


def _tokens(num_prefix: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, num_prefix + H * W, C, generator=g)


def _adapter(**kwargs) -> SERAPaperAdapter:
    # the router is given with arguments every ExpertRouter version takes
    cfg = dict(type='SERAPaperAdapter', in_channels=C, text_channels=CT,
               hidden_channels=D, num_heads=4,
               router=dict(type='ExpertRouter', hidden_channels=8))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _gelu(v: float) -> float:
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


# --------------------------------------------------------- adapter experts
@pytest.mark.parametrize('name', ADAPTER_EXPERTS)
def test_adapter_expert_shapes_and_bad_input(name):
    expert = build_experts([name], D)[0]
    for size in [(H, W), (1, 1), (7, 3)]:
        x = torch.randn(B, D, *size)
        y = expert(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(ValueError, match=f'\\(B, {D}, h, w\\).*{D + 1}'):
        expert(torch.randn(B, D + 1, H, W))
    with pytest.raises(ValueError, match=f'\\(B, {D}, h, w\\)'):
        expert(torch.randn(D, H, W))


def test_adapter_experts_registered_with_defaults():
    spatial, boundary, rich = build_experts(ADAPTER_EXPERTS, D)
    assert isinstance(spatial, PaperAdapterSpatialExpert)
    assert isinstance(boundary, PaperAdapterBoundaryExpert)
    assert isinstance(rich, PaperMultiScaleBranches)
    assert spatial.beta == 0.3 and isinstance(spatial.act, nn.GELU)
    assert boundary.alpha == 0.1 and isinstance(boundary.norm, nn.BatchNorm2d)
    assert spatial.depthwise.groups == D and boundary.depthwise.groups == D
    assert boundary.depthwise.bias is None
    assert rich.branch1.kernel_size == (1, 1) and rich.branch1.groups == 1
    assert rich.branch3.kernel_size == (3, 3) and rich.branch3.groups == D
    assert rich.branch5.kernel_size == (5, 5) and rich.branch5.groups == D
    s2 = build_experts([dict(type='paper_spatial', beta=0.5, act='ReLU')],
                       D)[0]
    assert s2.beta == 0.5 and isinstance(s2.act, nn.ReLU)
    with pytest.raises(ValueError, match='act'):
        PaperAdapterSpatialExpert(D, act='NoSuchActivation')


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_multiscale_identity_at_init(mode):
    rich = PaperMultiScaleBranches(D)
    getattr(rich, mode)()
    x = torch.randn(B, D, H, W)
    assert torch.equal(rich(x), x)
    with torch.no_grad():
        rich.fuse.weight.normal_(std=0.1)
    y = rich(x)
    assert not torch.allclose(y, x)
    # by construction: x + fuse(concat of the three branches)
    cat = torch.cat([rich.branch1(x), rich.branch3(x), rich.branch5(x)], 1)
    assert torch.allclose(y, x + rich.fuse(cat))


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_boundary_expert_is_relu_bn_of_grid_without_dwconv(mode):
    expert = PaperAdapterBoundaryExpert(D)
    with torch.no_grad():
        expert.norm.weight.uniform_(0.5, 1.5)
        expert.norm.bias.normal_()
        expert.norm.running_mean.normal_()
        expert.norm.running_var.uniform_(0.5, 2.0)
    reference = copy.deepcopy(expert.norm)
    getattr(expert, mode)()
    getattr(reference, mode)()
    x = torch.randn(B, D, H, W)
    with torch.no_grad():
        expert.depthwise.weight.zero_()
    assert torch.allclose(expert(x), torch.relu(reference(x)), atol=1e-6)
    # centre tap 1: DWConv(G) = G, so B = ReLU(BN(1.1 G))
    with torch.no_grad():
        expert.depthwise.weight[:, :, 1, 1] = 1.0
    assert torch.allclose(expert(x), torch.relu(reference(1.1 * x)),
                          atol=1e-6)


def test_spatial_expert_hand_computed():
    expert = PaperAdapterSpatialExpert(1)
    with torch.no_grad():
        expert.depthwise.weight.fill_(1.0)
        expert.depthwise.bias.fill_(-2.0)
    grid = 0.1 * torch.arange(1., 10.).reshape(1, 1, 3, 3)
    # 3x3 sums over the zero-padded neighbourhood of [[1,2,3],[4,5,6],
    # [7,8,9]]: [[12,21,16],[27,45,33],[24,39,28]], times 0.1, minus 2
    pre = [[-0.8, 0.1, -0.4], [0.7, 2.5, 1.3], [0.4, 1.9, 0.8]]
    expected = torch.tensor(
        [[_gelu(p) + 0.3 * 0.1 * (3 * i + j + 1) for j, p in enumerate(row)]
         for i, row in enumerate(pre)]).reshape(1, 1, 3, 3)
    assert torch.allclose(expert(grid), expected, atol=1e-6)


# ----------------------------------------------------------------- adapter
def test_paper_adapter_structure():
    adapter = _adapter()
    assert isinstance(adapter, SERAAdapter)
    assert adapter.expert_names == ['spatial', 'boundary']
    assert isinstance(adapter.router, ExpertRouter)
    assert adapter.router.expert_names == ['spatial', 'boundary']
    assert adapter.router.num_experts == 2
    assert adapter.router.in_channels == D
    assert adapter.router.text_channels == CT
    spatial, boundary = adapter.experts
    assert isinstance(spatial, PaperAdapterSpatialExpert)
    assert isinstance(boundary, PaperAdapterBoundaryExpert)
    assert isinstance(adapter.multiscale, PaperMultiScaleBranches)
    assert adapter.expert_coefficients == (0.25, 0.15)
    other = _adapter(spatial_weight=0.5, boundary_weight=0.2,
                     spatial_beta=0.1, boundary_alpha=0.7)
    assert other.expert_coefficients == (0.5, 0.2)
    assert other.experts[0].beta == 0.1 and other.experts[1].alpha == 0.7


def test_paper_adapter_default_router_is_visual_only():
    adapter = MODELS.build(dict(type='SERAPaperAdapter', in_channels=C,
                                text_channels=CT, hidden_channels=D))
    assert adapter.router.condition == 'visual'
    assert adapter.router.expert_names == ['spatial', 'boundary']


@pytest.mark.parametrize('num_prefix', [0, 1, 5])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_paper_adapter_exact_identity_at_init(num_prefix, mode):
    adapter = getattr(_adapter(), mode)()
    tokens = _tokens(num_prefix)
    out = adapter(tokens, (H, W), num_prefix, _text())
    assert out.shape == tokens.shape
    assert torch.equal(out, tokens)


def test_paper_adapter_grid_formula():
    adapter = _adapter().eval()
    with torch.no_grad():
        adapter.multiscale.fuse.weight.normal_(std=0.1)
        for p in adapter.experts[1].norm.parameters():
            p.normal_()
    text = _text()
    grid = torch.randn(B, D, H, W)
    w = adapter.router(grid, text.sentence)
    spatial, boundary = adapter.experts
    expected = (adapter.multiscale(grid) + 0.25 * w[:, 0, None, None, None] *
                spatial(grid) + 0.15 * w[:, 1, None, None, None] *
                boundary(grid))
    assert torch.allclose(adapter._refine_grid(grid, text), expected,
                          atol=1e-6)
    # both coefficients 0: only G_rich is left
    off = _adapter(spatial_weight=0.0, boundary_weight=0.0).eval()
    off.multiscale.load_state_dict(adapter.multiscale.state_dict())
    assert torch.equal(off._refine_grid(grid, text), adapter.multiscale(grid))


def test_paper_adapter_delta_and_prefix():
    adapter = _adapter().eval()
    with torch.no_grad():
        adapter.up.weight.normal_(std=0.5)
        adapter.up.bias.normal_(std=0.5)
    tokens = _tokens(5)
    out = adapter(tokens, (H, W), 5, _text(0))
    assert torch.equal(out[:, :5], tokens[:, :5])  # prefix: zero delta
    assert not torch.allclose(out[:, 5:], tokens[:, 5:])
    assert not torch.allclose(out, adapter(tokens, (H, W), 5, _text(3)))
    # top-1 routing: one expert per sample, same contract
    top1 = _adapter(router=dict(type='ExpertRouter', top_k=1)).eval()
    assert top1(tokens, (H, W), 5, _text()).shape == tokens.shape


def test_paper_adapter_gradients_reach_every_parameter():
    adapter = _adapter()
    with torch.no_grad():
        adapter.up.weight.normal_(std=0.5)
        adapter.up.bias.normal_(std=0.5)
    tokens = _tokens(1)
    adapter(tokens, (H, W), 1, _text()).pow(2).mean().backward()
    # The three G_rich branches feed the zero-initialised fuse conv: their
    # gradient is exactly 0 until fuse has moved (one optimiser step).
    gated = {n for n, _ in adapter.named_parameters()
             if n.startswith('multiscale.branch')}
    assert len(gated) == 6
    for name, p in adapter.named_parameters():
        assert p.requires_grad and p.grad is not None, name
        if name in gated:
            assert p.grad.abs().sum() == 0, name
        else:
            assert p.grad.abs().sum() > 0, name
    adapter.zero_grad()
    with torch.no_grad():
        adapter.multiscale.fuse.weight.normal_(std=0.1)
    adapter(tokens, (H, W), 1, _text()).pow(2).mean().backward()
    missing = [n for n, p in adapter.named_parameters()
               if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_paper_adapter_bad_inputs_raise():
    adapter = _adapter()
    text = _text()
    with pytest.raises(ValueError, match='N=21'):
        adapter(_tokens(1), (H, W), 2, text)
    with pytest.raises(ValueError, match=f'\\(B, N, {C}\\)'):
        adapter(torch.randn(B, H * W, C + 1), (H, W), 0, text)
    with pytest.raises(ValueError, match='text batch'):
        adapter(_tokens(0), (H, W), 0, _text(batch=B + 1))
    with pytest.raises(ValueError, match='divisible'):
        _adapter(hidden_channels=10)


# ------------------------------------------------------------ fusion experts
@pytest.mark.parametrize('name', FUSION_EXPERTS)
@pytest.mark.parametrize('size', [(7, 7), (6, 9), (1, 1)])
def test_fusion_expert_shape_and_identity_at_init(name, size):
    expert = build_fusion_experts([name], C)[0]
    x = torch.randn(B, C, *size)
    for mode in ('train', 'eval'):
        getattr(expert, mode)()
        y = expert(x)
        assert y.shape == x.shape
        assert torch.equal(y, x), mode
    x64 = x.double()
    y64 = expert.double()(x64)
    assert y64.dtype == torch.float64 and torch.equal(y64, x64)
    with pytest.raises(ValueError, match=f'\\(B, {C}, h, w\\).*{C - 1}'):
        expert(torch.randn(B, C - 1, *size).double())


def test_fusion_experts_registered():
    experts = build_fusion_experts(FUSION_EXPERTS, C)
    assert [type(e) for e in experts] == [
        PaperSpatialFusionExpert, PaperContextFusionExpert,
        PaperBoundaryFusionExpert, PaperShapeFusionExpert]
    ctx = build_fusion_experts([dict(type='paper_context', num_heads=2)],
                               C)[0]
    assert ctx.num_heads == 2
    with pytest.raises(ValueError, match='divisible'):
        PaperContextFusionExpert(C, num_heads=5)


def test_fixed_filters_are_exact_buffers():
    boundary = PaperBoundaryFusionExpert(C)
    shape = PaperShapeFusionExpert(C)
    for module, key in ((boundary, 'sobel_weight'), (shape, 'shape_weight')):
        buffers = dict(module.named_buffers())
        assert key in buffers
        assert key not in dict(module.named_parameters())
        assert not buffers[key].requires_grad
        assert buffers[key].dtype == torch.float32
        assert buffers[key].shape == (2 * C, 1, 3, 3)
        assert key not in module.state_dict()  # fixed: not checkpointed
    sobel = boundary.sobel_weight[:, 0].reshape(C, 2, 3, 3)
    assert torch.equal(sobel[:, 0], torch.tensor(SOBEL_X).expand(C, 3, 3))
    assert torch.equal(sobel[:, 1], torch.tensor(SOBEL_Y).expand(C, 3, 3))
    kernels = shape.shape_weight[:, 0].reshape(C, 2, 3, 3)
    assert torch.equal(kernels[:, 0], torch.tensor(BLUR).expand(C, 3, 3))
    assert torch.equal(kernels[:, 1], torch.tensor(LAPLACIAN).expand(C, 3, 3))
    assert kernels[0, 0].sum() == 1.0 and kernels[0, 1].sum() == 0.0
    # trainable parameters: the 1x1 mixing convs only
    assert {n for n, _ in boundary.named_parameters()} == {'mix.weight',
                                                           'mix.bias'}
    assert {n for n, _ in shape.named_parameters()} == {'mix.weight',
                                                        'mix.bias'}


def test_fixed_filter_responses():
    boundary = PaperBoundaryFusionExpert(C)
    shape = PaperShapeFusionExpert(C)
    const = torch.full((B, C, 5, 6), 2.5)
    gx, gy = boundary.gradients(const)
    assert torch.equal(gx, torch.zeros_like(gx))
    assert torch.equal(gy, torch.zeros_like(gy))
    blur, lap = shape.filter_responses(const)
    assert torch.allclose(blur, const) and torch.equal(lap,
                                                       torch.zeros_like(lap))
    # a ramp along x (value = column index): Sobel-x = 8, Sobel-y = 0 inside
    ramp = torch.arange(6.).expand(B, C, 5, 6).contiguous()
    gx, gy = boundary.gradients(ramp)
    assert torch.equal(gx[..., 1:-1, 1:-1], torch.full((B, C, 3, 4), 8.0))
    assert torch.equal(gy, torch.zeros_like(gy))
    blur, lap = shape.filter_responses(ramp)
    assert torch.allclose(blur[..., 1:-1], ramp[..., 1:-1])
    assert torch.equal(lap[..., 1:-1], torch.zeros(B, C, 5, 4))
    # an impulse: blur spreads the binomial kernel, Laplacian the stencil
    imp = torch.zeros(1, C, 5, 5)
    imp[..., 2, 2] = 1.0
    blur, lap = shape.filter_responses(imp)
    assert torch.equal(blur[0, 3, 1:4, 1:4], torch.tensor(BLUR))
    assert torch.equal(lap[0, 3, 1:4, 1:4], torch.tensor(LAPLACIAN))
    gx, gy = boundary.gradients(imp)
    # correlation: the response at (2+i, 2+j) is kernel[1-i, 1-j]
    assert torch.equal(gx[0, 0, 1:4, 1:4], torch.tensor(SOBEL_X).flip(0, 1))
    assert torch.equal(gy[0, 0, 1:4, 1:4], torch.tensor(SOBEL_Y).flip(0, 1))


def test_boundary_fusion_expert_formula():
    expert = PaperBoundaryFusionExpert(C)
    with torch.no_grad():
        expert.mix.weight.normal_(std=0.1)
        expert.mix.bias.normal_(std=0.1)
    x = torch.randn(B, C, 6, 5)
    gx, gy = expert.gradients(x)
    mag = torch.sqrt(gx ** 2 + gy ** 2 + 1e-6)
    expected = x + F.gelu(expert.mix(torch.cat([x, mag, gx + gy], 1)))
    assert torch.allclose(expert(x), expected, atol=1e-6)
    # finite gradient through |grad| even where the map is flat
    flat = torch.zeros(1, C, 4, 4, requires_grad=True)
    expert(flat).sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_shape_fusion_expert_formula():
    expert = PaperShapeFusionExpert(C)
    with torch.no_grad():
        expert.mix.weight.normal_(std=0.1)
    x = torch.randn(B, C, 6, 5)
    blur, lap = expert.filter_responses(x)
    expected = x + F.gelu(expert.mix(torch.cat([blur, lap], 1)))
    assert torch.allclose(expert(x), expected, atol=1e-6)


def test_spatial_fusion_expert_gain_and_positions():
    expert = PaperSpatialFusionExpert(C)
    assert expert.gain.item() == 0.0 and expert.gain.shape == ()
    x = torch.randn(B, C, 4, 6)
    expert(x).sum().backward()
    assert expert.gain.grad.abs() > 0  # the gate learns from step 1
    with torch.no_grad():
        expert.gain.fill_(1.0)
    delta = expert(torch.zeros(1, C, 4, 6))
    assert not torch.allclose(delta[..., 0, 0], delta[..., 3, 5])


def test_context_fusion_expert_mixes_positions_once_trained():
    expert = PaperContextFusionExpert(C, num_heads=4).eval()
    out_params = [expert.attn.out_proj.weight, expert.attn.out_proj.bias,
                  expert.fc2.weight, expert.fc2.bias]
    assert all(torch.equal(p, torch.zeros_like(p)) for p in out_params)
    with torch.no_grad():
        expert.attn.out_proj.weight.normal_(std=0.2)
    x = torch.randn(1, C, 4, 4)
    x2 = x.clone()
    x2[..., 0, 0] += 3.0 * torch.randn(1, C)  # not constant: LN keeps it
    # a change at one cell reaches another through self-attention
    assert not torch.allclose(expert(x)[..., 3, 3], expert(x2)[..., 3, 3])


# ---------------------------------------------------------------- config
def test_paper_ablation_config_builds_and_trains_one_step():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'sera', 'ablations', 'paper.py'))
    model = MODELS.build(random_init_cfg(cfg.model)).train()
    adapters = list(model.backbone.adapters.values())
    assert len(adapters) == 3
    assert all(type(a) is SERAPaperAdapter for a in adapters)
    assert all(a.hidden_channels == 32 for a in adapters)
    assert model.neck.residual is False
    assert model.neck.expert_names == FUSION_EXPERTS
    routers = [m for m in model.modules() if isinstance(m, ExpertRouter)]
    assert len(routers) == 3 + 3
    assert all(r.condition == 'visual' for r in routers)
    for r in model.neck.routers:
        assert r.top_k == 2 and r.noise == 'fixed' and r.noise_std == 1.0

    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    size = 64
    samples = []
    for i, text in enumerate(['the red circle on the left',
                              'a small blue square']):
        s = SegDataSample()
        s.set_metainfo(dict(text=text, sent_id=i, ori_shape=(size, size),
                            img_shape=(size, size), pad_shape=(size, size),
                            img_padding_size=[0, 0, 0, 0]))
        m = torch.zeros(1, size, size, dtype=torch.long)
        m[:, 8 + 20 * i:30 + 20 * i, 10:40] = 1
        s.gt_sem_seg = PixelData(data=m)
        samples.append(s)
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 256, (3, size, size),
                                   dtype=torch.uint8) for _ in range(2)],
             data_samples=samples), True)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    opt = torch.optim.Adam(trainable.values(), lr=1e-2)
    losses = model(**data, mode='loss')
    assert {'loss_ce', 'loss_dice', 'loss_balance', 'loss_z'} <= set(losses)
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    assert torch.isfinite(total)
    total.backward()
    opt.step()
    changed = {n for n, p in trainable.items()
               if not torch.equal(p.detach(), before[n])}
    for prefix in ('backbone.adapters.', 'neck.', 'decode_head.'):
        assert any(n.startswith(prefix) for n in changed), prefix
    # step 1 moves the zero-initialised up-projections (everything before
    # them in the adapters gets its gradient from step 2 on)
    assert any(n.startswith('backbone.adapters.') and '.up.' in n
               for n in changed)
    assert any(n.startswith('neck.level_experts.') for n in changed)


def test_paper_refcoco_config_loads():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'sera', 'sera_paper_dinov2-b_refcoco.py'))
    model = cfg.model
    assert model.backbone.type == 'DINOv2Backbone'
    assert model.backbone.adapter.type == 'SERAPaperAdapter'
    assert model.backbone.adapter.router.condition == 'visual'
    assert 'experts' not in model.backbone.adapter
    assert model.neck.residual is False
    assert tuple(model.neck.experts) == tuple(FUSION_EXPERTS)
    assert model.neck.router.top_k == 2 and model.neck.router.noise == 'fixed'
    assert model.z_loss_weight == 1e-3 and model.balance_loss_weight == 1e-2
    assert cfg.optim_wrapper.optimizer.type == 'Adam'
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.train_dataloader.batch_size * 2 == 16  # x 2 GPUs
    sched, = cfg.param_scheduler
    assert sched.type == 'MultiStepLR' and sched.gamma == 0.1
    assert sched.milestones == [35] and cfg.train_cfg.max_epochs == 50
    assert cfg.train_dataloader.dataset.split_by == 'unc'


def test_adapter_boundary_expert_takes_norm_cfg():
    from sera_mm.models.adapters.paper_experts import \
        PaperAdapterBoundaryExpert
    assert type(PaperAdapterBoundaryExpert(8).norm) is torch.nn.BatchNorm2d
    sync = PaperAdapterBoundaryExpert(8, norm_cfg=dict(type='SyncBN'))
    assert isinstance(sync.norm, torch.nn.SyncBatchNorm)
    # mmengine's sync_bn='torch' conversion reaches it too
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(
        PaperAdapterBoundaryExpert(8))
    assert isinstance(converted.norm, torch.nn.SyncBatchNorm)
    gn = PaperAdapterBoundaryExpert(8, norm_cfg=dict(type='GN',
                                                     num_groups=2))
    assert isinstance(gn.norm, torch.nn.GroupNorm)
    assert gn(torch.randn(2, 8, 5, 5)).shape == (2, 8, 5, 5)
