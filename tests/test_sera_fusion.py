"""SERAFusion neck and its geometry-preserving experts."""
import pytest
import torch

from sera_mm.models.necks import SERAFusion, build_fusion_experts
from sera_mm.models.layers import coord_maps
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS

B, CT, L, CF = 2, 24, 5, 32
EXPERTS = ['identity', 'conv3x3', 'dilated3x3', 'coord', 'multiscale']


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _text(seed: int = 0, batch: int = B) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    pad = torch.zeros(batch, L, dtype=torch.bool)
    pad[0, 3:] = True
    return TextFeatures(
        torch.randn(batch, L, CT, generator=g), pad,
        torch.randn(batch, CT, generator=g))


def _neck(in_channels, **kwargs) -> SERAFusion:
    cfg = dict(type='SERAFusion', in_channels=in_channels, text_channels=CT,
               channels=CF, num_heads=4)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _mobilenet_feats(batch: int = B):
    return [torch.randn(batch, 32, 28, 28), torch.randn(batch, 96, 14, 14),
            torch.randn(batch, 1280, 7, 7)]


def _perturb_film(neck: SERAFusion) -> None:
    """Give the (zero-initialised) FiLM layers non-zero weights."""
    with torch.no_grad():
        for film in neck.films:
            film.proj.weight.normal_(std=0.2)


# ----------------------------------------------------------------- experts
@pytest.mark.parametrize('name', EXPERTS)
@pytest.mark.parametrize('size', [(7, 7), (6, 9), (1, 1)])
def test_fusion_expert_preserves_geometry(name, size):
    expert = build_fusion_experts([name], CF)[0]
    x = torch.randn(B, CF, *size)
    y = expert(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match=f'\\(B, {CF}, h, w\\)'):
        expert(torch.randn(B, CF - 1, *size))


def test_fusion_experts_registered():
    for t in ('PointwiseFusionExpert', 'ConvFusionExpert',
              'DilatedFusionExpert', 'CoordFusionExpert',
              'MultiScaleFusionExpert'):
        assert MODELS.get(t) is not None
    identity, dilated = build_fusion_experts(['identity', 'dilated3x3'], CF)
    assert identity.block.conv.kernel_size == (1, 1)
    assert dilated.block.conv.dilation == (2, 2)


def test_coord_maps_are_normalised_positions():
    maps = coord_maps(torch.zeros(B, 3, 4, 6))
    assert maps.shape == (B, 2, 4, 6)
    xx, yy = maps[0]
    assert (xx[:, 1:] > xx[:, :-1]).all() and (xx[1:] == xx[:-1]).all()
    assert (yy[1:] > yy[:-1]).all() and (yy[:, 1:] == yy[:, :-1]).all()
    assert maps.abs().max() < 1
    assert torch.allclose(xx.mean(), torch.tensor(0.0), atol=1e-6)


def test_coord_expert_is_position_aware():
    expert = build_fusion_experts(['coord'], CF)[0].eval()
    y = expert(torch.zeros(1, CF, 6, 6))
    # a constant input gives a position-dependent output
    assert not torch.allclose(y[..., 1, 1], y[..., 4, 4])


# -------------------------------------------------------------------- neck
def test_output_shape_mobilenet_like_levels():
    neck = _neck([32, 96, 1280])
    out = neck(_mobilenet_feats(), _text())
    assert out.shape == (B, CF, 28, 28)
    assert torch.isfinite(out).all()


def test_output_shape_other_fuse_level_and_sum_aggregate():
    neck = _neck([32, 96, 1280], fuse_level=1, aggregate='sum')
    out = neck(_mobilenet_feats(), _text())
    assert out.shape == (B, CF, 14, 14)


def test_output_shape_vit_like_equal_sizes():
    neck = _neck([48, 48, 48], word_attention=False)
    feats = [torch.randn(B, 48, 10, 10) for _ in range(3)]
    out = neck(feats, _text())
    assert out.shape == (B, CF, 10, 10)
    assert not hasattr(neck, 'word_attns')


def test_routers_recorded_per_level():
    neck = _neck([32, 96, 1280], experts=['identity', 'coord', 'multiscale'])
    assert len(neck.routers) == 3
    neck(_mobilenet_feats(), _text())
    for r in neck.routers:
        assert r.expert_names == ['identity', 'coord', 'multiscale']
        assert r.last_weights.shape == (B, 3)
        assert torch.allclose(r.last_weights.sum(1), torch.ones(B))
    assert all(isinstance(n.balance_loss(), torch.Tensor)
               for n in neck.routers)


def test_output_depends_on_text():
    neck = _neck([32, 96, 1280]).eval()
    feats = _mobilenet_feats()
    out = neck(feats, _text(0))
    assert not torch.allclose(out, neck(feats, _text(3)))
    # words alone (same sentence) matter through the cross-attention
    t = _text(0)
    t_words = TextFeatures(t.words.flip(1), t.pad_mask, t.sentence)
    assert not torch.allclose(out, neck(feats, t_words))
    # padded words do not
    words = t.words.clone()
    words[0, 3:] += 7.0
    t_pad = TextFeatures(words, t.pad_mask, t.sentence)
    assert torch.allclose(out, neck(feats, t_pad), atol=1e-5)


def test_sentence_film_modulates_once_trained():
    neck = _neck([32, 96, 1280], word_attention=False,
                 router=dict(type='ExpertRouter', mode='uniform')).eval()
    feats = _mobilenet_feats()
    t = _text(0)
    t_sent = TextFeatures(t.words, t.pad_mask, t.sentence * -1)
    # FiLM starts at identity and routing is uniform: the sentence is unused
    assert torch.allclose(neck(feats, t), neck(feats, t_sent), atol=1e-6)
    _perturb_film(neck)
    assert not torch.allclose(neck(feats, t), neck(feats, t_sent))


def test_gradients_reach_parameters():
    neck = _neck([32, 96, 1280])
    _perturb_film(neck)
    out = neck(_mobilenet_feats(), _text())
    loss = out.pow(2).mean() + sum(r.balance_loss() for r in neck.routers)
    loss.backward()
    missing = [n for n, p in neck.named_parameters()
               if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_bad_inputs_raise():
    neck = _neck([32, 96, 1280])
    feats = _mobilenet_feats()
    with pytest.raises(ValueError, match='3 levels, got 2'):
        neck(feats[:2], _text())
    bad = list(feats)
    bad[1] = torch.randn(B, 95, 14, 14)
    with pytest.raises(ValueError, match=r'feats\[1\].*\(B, 96, h, w\).*95'):
        neck(bad, _text())
    with pytest.raises(ValueError, match='batch'):
        neck(feats, _text(batch=B + 1))
    with pytest.raises(ValueError, match='fuse_level'):
        _neck([32, 96], fuse_level=2)
    with pytest.raises(ValueError, match='aggregate'):
        _neck([32, 96], aggregate='max')


# ------------------------------------------------- residual=False (paper)
PAPER_EXPERTS = ['paper_spatial', 'paper_context', 'paper_boundary',
                 'paper_shape']


def _manual_level(neck: SERAFusion, i: int, f: torch.Tensor,
                  text: TextFeatures) -> torch.Tensor:
    """Lateral + the expert mixture as an explicit loop (no FiLM or word
    attention: call with FiLM at identity and word_attention=False)."""
    x = neck.laterals[i](f)
    w = neck.routers[i](x, text.sentence)
    mixed = sum(expert(x) * w[:, e, None, None, None]
                for e, expert in enumerate(neck.level_experts[i]))
    return x + mixed if neck.residual else mixed


@pytest.mark.parametrize('residual', [True, False])
def test_level_mixture_matches_explicit_loop(residual):
    neck = _neck([32, 96, 1280], word_attention=False,
                 residual=residual).eval()
    assert neck.residual is residual
    feats, text = _mobilenet_feats(), _text()
    for i, f in enumerate(feats):
        assert torch.equal(neck._level(i, f, text),
                           _manual_level(neck, i, f, text))


def test_residual_false_paper_experts_start_at_lateral_feature():
    neck = _neck([32, 96, 1280], experts=PAPER_EXPERTS, residual=False,
                 word_attention=False)
    assert neck.expert_names == PAPER_EXPERTS
    feats, text = _mobilenet_feats(), _text()
    for i, f in enumerate(feats):
        # residual experts at identity, weights summing to 1: x itself
        lateral = neck.laterals[i](f)
        assert torch.allclose(neck._level(i, f, text), lateral, atol=1e-6)
    out = _neck([32, 96, 1280], experts=PAPER_EXPERTS,
                residual=False)(feats, text)
    assert out.shape == (B, CF, 28, 28) and torch.isfinite(out).all()


def test_residual_false_with_top2_routing():
    neck = _neck([32, 96, 1280], experts=PAPER_EXPERTS, residual=False,
                 word_attention=False,
                 router=dict(type='ExpertRouter', top_k=2)).eval()
    feats, text = _mobilenet_feats(), _text()
    for i, f in enumerate(feats):
        lateral = neck.laterals[i](f)
        w = neck.routers[i](lateral, text.sentence)
        assert ((w > 0).sum(dim=1) == 2).all()
        # renormalised top-2 gates sum to 1: still x at init
        assert torch.allclose(w.sum(dim=1), torch.ones(B))
        assert torch.allclose(neck._level(i, f, text), lateral, atol=1e-6)
    # once trained, the mixture moves away from x
    for experts in neck.level_experts:
        with torch.no_grad():
            experts[2].mix.weight.normal_(std=0.1)  # paper_boundary
            experts[3].mix.weight.normal_(std=0.1)  # paper_shape
            experts[0].gain.fill_(0.5)  # paper_spatial
    lateral = neck.laterals[0](feats[0])
    assert not torch.allclose(neck._level(0, feats[0], text), lateral,
                              atol=1e-4)


def test_residual_false_old_experts_drop_the_skip():
    neck = _neck([32, 96], experts=['identity', 'conv3x3'], residual=False,
                 word_attention=False).eval()
    feats, text = _mobilenet_feats()[:2], _text()
    lateral = neck.laterals[0](feats[0])
    assert not torch.allclose(neck._level(0, feats[0], text), lateral)
    assert torch.equal(neck._level(0, feats[0], text),
                       _manual_level(neck, 0, feats[0], text))
