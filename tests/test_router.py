"""ExpertRouter: weights, sparsity, temperature, uniform mode, balance loss."""
import pytest
import torch

import sera_mm  # noqa: F401
from sera_mm.models.routers import ExpertRouter
from sera_mm.registry import MODELS

B, D, CT, E = 4, 16, 12, 5


def _inputs(seed: int = 0, h: int = 6, w: int = 7):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, D, h, w, generator=g),
            torch.randn(B, CT, generator=g))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _sharpen(router: ExpertRouter, seed: int = 1, scale: float = 3.0) -> None:
    """Give the output layer large random weights so routing is not
    near-uniform (as after training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        router.fc_out.weight.copy_(
            torch.randn(router.fc_out.weight.shape, generator=g) * scale)


def test_built_from_registry_and_default_names():
    router = MODELS.build(
        dict(type='ExpertRouter', in_channels=D, text_channels=CT,
             num_experts=E))
    assert isinstance(router, ExpertRouter)
    assert router.expert_names == [f'expert{i}' for i in range(E)]
    assert router.last_weights is None


def test_global_weights_sum_to_one_and_near_uniform_at_init():
    router = ExpertRouter(D, CT, E)
    visual, sentence = _inputs()
    w = router(visual, sentence)
    assert w.shape == (B, E)
    assert torch.allclose(w.sum(1), torch.ones(B), atol=1e-6)
    assert (w >= 0).all()
    # near uniform at init, but not exactly (the last layer is not zero)
    assert torch.allclose(w, torch.full_like(w, 1 / E), atol=0.05)


def test_per_location_shapes_and_last_weights_mean():
    router = ExpertRouter(D, CT, E, per_location=True)
    _sharpen(router)
    visual, sentence = _inputs(h=5, w=3)
    w = router(visual, sentence)
    assert w.shape == (B, E, 5, 3)
    assert torch.allclose(w.sum(1), torch.ones(B, 5, 3), atol=1e-6)
    # routing differs between locations
    assert not torch.allclose(w[..., 0, 0], w[..., 4, 2])
    assert router.last_weights.shape == (B, E)
    assert torch.allclose(router.last_weights, w.mean(dim=(2, 3)))
    assert not router.last_weights.requires_grad


def test_last_weights_recorded_per_sample_and_detached():
    router = ExpertRouter(D, CT, E)
    _sharpen(router)
    visual, sentence = _inputs()
    w = router(visual, sentence)
    assert torch.equal(router.last_weights, w.detach())
    assert not router.last_weights.requires_grad
    # different samples -> different weights
    assert not torch.allclose(router.last_weights[0], router.last_weights[1])


def test_weights_depend_on_sentence():
    router = ExpertRouter(D, CT, E)
    _sharpen(router)
    visual, sentence = _inputs()
    w1 = router(visual, sentence)
    w2 = router(visual, sentence.flip(0))
    assert not torch.allclose(w1, w2)


@pytest.mark.parametrize('per_location', [False, True])
def test_top_k_zeros_and_renormalises(per_location):
    dense = ExpertRouter(D, CT, E, per_location=per_location)
    _sharpen(dense)
    sparse = ExpertRouter(D, CT, E, per_location=per_location, top_k=2)
    sparse.load_state_dict(dense.state_dict())
    visual, sentence = _inputs()
    wd = dense(visual, sentence)
    ws = sparse(visual, sentence)
    assert ws.shape == wd.shape
    assert ((ws > 0).sum(1) == 2).all()
    assert torch.allclose(ws.sum(1), torch.ones_like(ws.sum(1)), atol=1e-6)
    # kept entries are the two largest dense weights, renormalised
    top = wd.topk(2, dim=1)
    kept = ws.gather(1, top.indices)
    expected = top.values / top.values.sum(1, keepdim=True)
    assert torch.allclose(kept, expected, atol=1e-6)


def test_top_1_is_one_hot_with_gradient_to_parameters():
    router = ExpertRouter(D, CT, E, top_k=1)
    _sharpen(router)
    visual, sentence = _inputs()
    w = router(visual, sentence)
    assert torch.equal(w.detach(), torch.nn.functional.one_hot(
        w.argmax(1), E).float())
    # A top-1 weight is p/p = 1, so gradients come only through sharper
    # top-k; check with top_k=2 that gradients reach the MLP.
    router2 = ExpertRouter(D, CT, E, top_k=2)
    _sharpen(router2)
    w2 = router2(visual, sentence)
    (w2 * torch.arange(E, dtype=torch.float)).sum().backward()
    assert router2.text_proj.weight.grad.abs().sum() > 0


def test_lower_temperature_is_sharper():
    visual, sentence = _inputs()
    reference = ExpertRouter(D, CT, E)
    _sharpen(reference, scale=0.5)
    maxima = []
    for t in (4.0, 1.0, 0.25):
        router = ExpertRouter(D, CT, E, temperature=t)
        router.load_state_dict(reference.state_dict())
        maxima.append(router(visual, sentence).max(1).values)
    assert (maxima[1] > maxima[0]).all()
    assert (maxima[2] > maxima[1]).all()


@pytest.mark.parametrize('temperature', [0.0, -1.0])
def test_non_positive_temperature_raises(temperature):
    with pytest.raises(ValueError, match='temperature'):
        ExpertRouter(D, CT, E, temperature=temperature)


def test_invalid_top_k_and_mode_raise():
    with pytest.raises(ValueError, match='top_k'):
        ExpertRouter(D, CT, E, top_k=E + 1)
    with pytest.raises(ValueError, match='mode'):
        ExpertRouter(D, CT, E, mode='random')
    with pytest.raises(ValueError, match='balance'):
        ExpertRouter(D, CT, E, balance='entropy')


def test_bad_input_shapes_raise():
    router = ExpertRouter(D, CT, E)
    visual, sentence = _inputs()
    with pytest.raises(ValueError, match='visual'):
        router(visual[:, :3], sentence)
    with pytest.raises(ValueError, match='sentence'):
        router(visual, sentence[:, :3])
    with pytest.raises(ValueError, match='batch'):
        router(visual, sentence[:2])


@pytest.mark.parametrize('per_location', [False, True])
def test_uniform_mode_exact_and_zero_balance(per_location):
    router = ExpertRouter(D, CT, E, mode='uniform', per_location=per_location)
    assert len(list(router.parameters())) == 0
    visual, sentence = _inputs()
    w = router(visual, sentence)
    assert torch.equal(w, torch.full_like(w, 1 / E))
    loss = router.balance_loss()
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0
    assert loss.item() == 0.0
    assert torch.equal(router.last_weights, torch.full((B, E), 1 / E))


def test_balance_loss_zero_before_forward():
    loss = ExpertRouter(D, CT, E).balance_loss()
    assert isinstance(loss, torch.Tensor) and loss.item() == 0.0


@pytest.mark.parametrize('balance', ['cv', 'switch'])
def test_balance_loss_larger_when_collapsed(balance):
    visual, sentence = _inputs()
    balanced = ExpertRouter(D, CT, E, balance=balance)
    balanced(visual, sentence)  # near uniform at init
    loss_balanced = balanced.balance_loss()

    collapsed = ExpertRouter(D, CT, E, balance=balance)
    with torch.no_grad():
        collapsed.fc_out.bias.copy_(torch.tensor([20.0] + [0.0] * (E - 1)))
    collapsed(visual, sentence)
    loss_collapsed = collapsed.balance_loss()
    assert loss_collapsed > loss_balanced + 1.0
    # collapsed onto one expert: E * 1 - 1
    assert loss_collapsed.item() == pytest.approx(E - 1, abs=1e-3)
    # near-uniform weights; with switch the argmax dispatch may still pile up
    assert loss_balanced.item() == pytest.approx(0.0, abs=0.2)


@pytest.mark.parametrize('balance', ['cv', 'switch'])
@pytest.mark.parametrize('per_location', [False, True])
def test_balance_loss_gradient_reaches_router(balance, per_location):
    router = ExpertRouter(D, CT, E, balance=balance,
                          per_location=per_location)
    _sharpen(router)
    visual, sentence = _inputs()
    router(visual, sentence)
    loss = router.balance_loss()
    assert loss.requires_grad
    loss.backward()
    for name, p in router.named_parameters():
        assert p.grad is not None, name
    assert router.fc_out.weight.grad.abs().sum() > 0
    assert router.text_proj.weight.grad.abs().sum() > 0
    assert router.visual_proj.weight.grad.abs().sum() > 0


def test_router_deep_copies_and_pickles_after_forward():
    import copy
    import pickle
    router = ExpertRouter(D, CT, E)
    router(*_inputs())
    assert router.balance_loss().requires_grad
    clone = copy.deepcopy(router)
    assert clone.balance_loss().item() == 0.0
    assert torch.equal(clone.last_weights, router.last_weights)
    restored = pickle.loads(pickle.dumps(router))
    assert restored.balance_loss().item() == 0.0
    w = restored(*_inputs())
    assert torch.allclose(w, router(*_inputs()))
