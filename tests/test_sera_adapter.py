"""SERAAdapter, its grid experts and word cross-attention."""
import os.path as osp

import pytest
import torch

from sera_mm.models.adapters import (BoundaryExpert, SERAAdapter,
                                     WordCrossAttention, build_experts)
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS

B, C, CT, D, L = 2, 32, 24, 16, 6
H, W = 5, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _text(seed: int = 0, batch: int = B, channels: int = CT) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(batch, L, channels, generator=g)
    pad = torch.zeros(batch, L, dtype=torch.bool)
    pad[0, 4:] = True  # sample 0 has 4 words, sample 1 has 6
    sentence = torch.randn(batch, channels, generator=g)
    return TextFeatures(words, pad, sentence)


def _tokens(num_prefix: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, num_prefix + H * W, C, generator=g)


def _adapter(**kwargs) -> SERAAdapter:
    cfg = dict(type='SERAAdapter', in_channels=C, text_channels=CT,
               hidden_channels=D, num_heads=4)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _perturb_up(adapter: SERAAdapter) -> None:
    with torch.no_grad():
        adapter.up.weight.normal_(std=0.5)
        adapter.up.bias.normal_(std=0.5)


# --------------------------------------------------------------- experts
@pytest.mark.parametrize('name', ['spatial', 'context', 'boundary',
                                  'semantic'])
def test_each_expert_keeps_grid_shape(name):
    expert = build_experts([name], D)[0]
    x = torch.randn(B, D, H, W)
    y = expert(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match=f'\\(B, {D}, h, w\\)'):
        expert(torch.randn(B, D + 1, H, W))


def test_experts_registered_and_configurable():
    for t in ('SpatialExpert', 'ContextExpert', 'BoundaryExpert',
              'SemanticExpert'):
        assert MODELS.get(t) is not None
    ctx = build_experts([dict(type='context', dilation=2)], D)[0]
    assert ctx.depthwise.dilation == (2, 2)
    with pytest.raises(ValueError, match='unknown expert'):
        build_experts(['nope'], D)
    with pytest.raises(ValueError, match='at least one'):
        build_experts([], D)


def test_context_expert_sees_farther_than_spatial():
    spatial, context = build_experts(['spatial', 'context'], D)
    x = torch.zeros(1, D, 9, 9)
    x[..., 4, 4] = 1.0  # an impulse in the centre
    base_s = spatial(torch.zeros_like(x))
    base_c = context(torch.zeros_like(x))
    diff_s = (spatial(x) - base_s).abs().sum(1)[0]
    diff_c = (context(x) - base_c).abs().sum(1)[0]
    # 3 cells away: reached by the dilated (3) conv, not by the 3x3 one
    assert diff_s[4, 7] == 0
    assert diff_c[4, 7] > 0


def test_boundary_filters_zero_on_constant_input():
    expert = BoundaryExpert(D)
    assert len(list(expert.buffers())) == 1
    assert not any('edge' in n for n, _ in expert.named_parameters())
    const = torch.full((B, D, H, W), 3.7)
    resp = expert.edge_responses(const)
    assert resp.shape == (B, 3 * D, H, W)
    assert torch.allclose(resp, torch.zeros_like(resp), atol=1e-6)
    # a vertical step edge gives a Sobel-x response, no Sobel-y one
    step = torch.zeros(1, D, 6, 6)
    step[..., 3:] = 1.0
    resp = expert.edge_responses(step)
    sobel_x, sobel_y = resp[:, 0::3], resp[:, 1::3]
    assert sobel_x.abs().sum() > 0
    assert torch.allclose(sobel_y, torch.zeros_like(sobel_y))


def test_compile_check_names_a_torch_path_with_spaces():
    from sera_mm.engine.launch_utils import check_compile_supported
    with pytest.raises(RuntimeError, match='My Projects'):
        check_compile_supported('/home/u/My Projects/.venv/lib/torch')
    check_compile_supported('/home/u/projects/.venv/lib/torch')


def test_boundary_expert_compiles_with_same_values_and_gradients():
    """Under torch.compile the replicate padding takes another path (the
    compiled replication_pad2d backward fails on grids viewed from
    tokens); values and gradients equal eager mode's. Where torch lives
    under a path with spaces, compiling is refused with a clear error
    instead (its C++ build cannot link there)."""
    from sera_mm.engine.launch_utils import (check_compile_supported,
                                             compile_model_methods)
    torch_dir = osp.dirname(osp.abspath(torch.__file__))
    if any(ch.isspace() for ch in torch_dir):
        with pytest.raises(RuntimeError, match='whitespace'):
            check_compile_supported()
        with pytest.raises(RuntimeError, match='whitespace'):
            compile_model_methods(BoundaryExpert(D), ('forward', ))
        return
    expert = BoundaryExpert(D)
    # a grid viewed from tokens (B, h*w, D), as the adapters make it
    tokens = torch.randn(B, H * W, D)

    def run(module):
        x = tokens.clone().requires_grad_()
        grid = x.transpose(1, 2).reshape(B, D, H, W)
        out = module(grid)
        out.square().sum().backward()
        return out.detach(), x.grad, expert.mix.weight.grad.clone()

    eager = run(expert)
    expert.zero_grad()
    torch._dynamo.reset()
    compiled = run(torch.compile(expert))
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-5)
    from sera_mm.models.adapters.experts import replicate_pad1
    grid = torch.randn(B, D, H, W)
    torch.testing.assert_close(
        torch.compile(replicate_pad1)(grid),
        torch.nn.functional.pad(grid, (1, 1, 1, 1), mode='replicate'))


# ------------------------------------------------------- cross-attention
def test_cross_attention_ignores_padded_words_and_all_pad_rows():
    attn = WordCrossAttention(D, CT, num_heads=4).eval()
    q = torch.randn(B, 7, D)
    text = _text()
    out = attn(q, text.words, text.pad_mask)
    words2 = text.words.clone()
    words2[0, 5] += 10.0
    assert torch.allclose(attn(q, words2, text.pad_mask), out, atol=1e-6)
    all_pad = torch.ones(B, L, dtype=torch.bool)
    out_pad = attn(q, text.words, all_pad)
    assert torch.isfinite(out_pad).all()
    assert torch.equal(out_pad, torch.zeros_like(out_pad))
    with pytest.raises(ValueError, match='pad_mask'):
        attn(q, text.words, text.pad_mask[:, :3])
    with pytest.raises(ValueError, match='divisible'):
        WordCrossAttention(10, CT, num_heads=4)


# ----------------------------------------------------------------- adapter
@pytest.mark.parametrize('num_prefix', [0, 1, 5])
def test_exact_identity_at_init(num_prefix):
    adapter = _adapter()
    tokens = _tokens(num_prefix)
    out = adapter(tokens, (H, W), num_prefix, _text())
    assert out.shape == tokens.shape
    assert torch.equal(out, tokens)


def test_router_is_built_with_expert_names_and_sizes():
    adapter = _adapter(router=dict(type='ExpertRouter', hidden_channels=8,
                                   temperature=0.5))
    assert adapter.router.expert_names == ['spatial', 'context', 'boundary',
                                           'semantic']
    assert adapter.router.num_experts == 4
    assert adapter.router.in_channels == D
    assert adapter.router.text_channels == CT
    assert adapter.router.temperature == 0.5
    adapter(_tokens(1), (H, W), 1, _text())
    assert adapter.router.last_weights.shape == (B, 4)


def test_output_changes_and_depends_on_text_after_perturbing_up():
    adapter = _adapter().eval()
    _perturb_up(adapter)
    tokens = _tokens(1)
    out = adapter(tokens, (H, W), 1, _text(0))
    assert not torch.allclose(out[:, 1:], tokens[:, 1:])
    # prefix tokens get a zero delta
    assert torch.equal(out[:, :1], tokens[:, :1])
    out_other = adapter(tokens, (H, W), 1, _text(7))
    assert not torch.allclose(out, out_other)
    # the word path alone (same sentence, other words) changes the output
    t = _text(0)
    t2 = TextFeatures(t.words.flip(1), t.pad_mask, t.sentence)
    assert not torch.allclose(adapter(tokens, (H, W), 1, t2), out)


def test_padding_mask_respected():
    adapter = _adapter().eval()
    _perturb_up(adapter)
    tokens = _tokens(1)
    text = _text()
    out = adapter(tokens, (H, W), 1, text)
    words = text.words.clone()
    words[0, 4:] = torch.randn(L - 4, CT) * 5  # padded positions only
    out2 = adapter(tokens, (H, W), 1, TextFeatures(words, text.pad_mask,
                                                   text.sentence))
    assert torch.allclose(out, out2, atol=1e-6, rtol=0)
    # a non-padded word does matter
    words[0, 0] += 5.0
    out3 = adapter(tokens, (H, W), 1, TextFeatures(words, text.pad_mask,
                                                   text.sentence))
    assert not torch.allclose(out[0], out3[0])


@pytest.mark.parametrize('per_location', [False, True])
def test_gradients_reach_every_parameter(per_location):
    adapter = _adapter(router=dict(type='ExpertRouter',
                                   per_location=per_location))
    _perturb_up(adapter)
    tokens = _tokens(1)
    out = adapter(tokens, (H, W), 1, _text())
    (out ** 2).mean().backward()
    for name, p in adapter.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_up_projection_gets_gradient_at_init():
    adapter = _adapter()
    out = adapter(_tokens(1), (H, W), 1, _text())
    (out ** 2).mean().backward()
    assert adapter.up.weight.grad.abs().sum() > 0


def test_bad_shapes_raise_with_names():
    adapter = _adapter()
    text = _text()
    with pytest.raises(ValueError, match='num_prefix.*h\\*w'):
        adapter(_tokens(1), (H, W + 1), 1, text)
    with pytest.raises(ValueError, match='N=21'):
        adapter(_tokens(1), (H, W), 2, text)
    with pytest.raises(ValueError, match='tokens'):
        adapter(torch.randn(B, H * W, C + 1), (H, W), 0, text)
    with pytest.raises(ValueError, match='text batch'):
        adapter(_tokens(0), (H, W), 0, _text(batch=B + 1))
    with pytest.raises(ValueError, match='text channels'):
        adapter(_tokens(0), (H, W), 0, _text(channels=CT + 2))


@pytest.mark.parametrize('experts', [('spatial', 'semantic'), ('boundary', )])
def test_expert_subset_config(experts):
    adapter = _adapter(experts=experts)
    assert len(adapter.experts) == len(experts)
    assert adapter.router.expert_names == list(experts)
    tokens = _tokens(1)
    assert torch.equal(adapter(tokens, (H, W), 1, _text()), tokens)
    _perturb_up(adapter)
    out = adapter(tokens, (H, W), 1, _text())
    assert out.shape == tokens.shape
    assert adapter.router.last_weights.shape == (B, len(experts))
    if len(experts) == 1:
        assert torch.allclose(adapter.router.last_weights,
                              torch.ones(B, 1))


def test_fixed_scale_and_uniform_router():
    adapter = _adapter(learnable_scale=False, init_scale=0.0,
                       router=dict(type='ExpertRouter', mode='uniform'))
    assert 'scale' not in dict(adapter.named_parameters())
    _perturb_up(adapter)
    tokens = _tokens(1)
    # scale 0 -> still identity even with a non-zero up-projection
    assert torch.equal(adapter(tokens, (H, W), 1, _text()), tokens)
    assert adapter.router.balance_loss().item() == 0.0


# ------------------------------------------------- activation checkpointing
@pytest.mark.parametrize('num_prefix', [0, 1])
def test_with_cp_same_values_gradients_and_less_stored(num_prefix):
    """with_cp recomputes the adapter in the backward pass: same output,
    same gradients (dropout masks replayed), and only the input kept."""
    plain = _adapter(dropout=0.2)
    _perturb_up(plain)
    cp = _adapter(dropout=0.2, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    text = _text()
    grads, stored = [], []
    for model in (plain, cp):
        model.train()
        tokens = _tokens(num_prefix).requires_grad_(True)
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        torch.manual_seed(5)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(tokens, (H, W), num_prefix, text)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()\
            .backward()
        grads.append([tokens.grad] + [p.grad for p in model.parameters()])
        stored.append(sum(saved))
        if model is plain:
            ref = out.detach()
        else:
            torch.testing.assert_close(out.detach(), ref, rtol=0, atol=0)
    for g_plain, g_cp in zip(*grads):
        assert g_plain is not None and g_cp is not None
        torch.testing.assert_close(g_cp, g_plain, rtol=1e-5, atol=1e-6)
    # the checkpointed adapter keeps its input tokens (and text) only
    assert stored[1] < stored[0] / 2
    # inference (no grad) and eval mode take the plain path
    cp.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            cp(_tokens(num_prefix), (H, W), num_prefix, text),
            plain.eval()(_tokens(num_prefix), (H, W), num_prefix, text))


def _training_adapter(with_cp: bool):
    """A perturbed adapter in training mode and tokens (one prefix token)
    that require gradients."""
    model = _adapter(with_cp=with_cp)
    _perturb_up(model)
    model.train()
    return model, _tokens(1).requires_grad_(True)


def test_with_cp_router_losses_train_the_router():
    """The routing recorded in the forward feeds the auxiliary losses; their
    gradient reaches the router through the recomputed adapter."""
    from sera_mm.models.routers.expert_router import RoutingRecorder
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model, tokens = _training_adapter(with_cp)
        with RoutingRecorder() as rec:
            out = model(tokens, (H, W), 1, _text())
        assert len(rec.outputs) == 1
        loss = model.router.aux_losses(('balance', ), rec.outputs[0])
        (out.sum() + loss['balance']).backward()
        assert len(rec.outputs) == 1
        grads.append(model.router.fc_out.weight.grad)
    assert grads[1].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_with_cp_recomputation_records_nothing_and_keeps_router_state():
    """Backward inside the recorder: the recomputation adds no routing
    output and leaves last_weights and the live loss tensors as the
    forward set them."""
    from sera_mm.models.routers.expert_router import RoutingRecorder
    model, tokens = _training_adapter(with_cp=True)
    with RoutingRecorder() as rec:
        out = model(tokens, (H, W), 1, _text())
        weights, live = model.router.last_weights, model.router._live.probs
        out.sum().backward()
    assert len(rec.outputs) == 1
    assert model.router.last_weights is weights
    assert model.router._live.probs is live
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


def test_with_cp_refuses_batchnorm_in_the_adapter():
    with pytest.raises(ValueError, match='BatchNorm.*twice'):
        _adapter(with_cp=True, experts=[
            'spatial', dict(type='PaperAdapterBoundaryExpert',
                            name='boundary')])
