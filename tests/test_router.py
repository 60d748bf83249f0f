"""ExpertRouter: weights, sparsity, temperature, uniform mode, balance loss."""
import pytest
import torch

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


def _router_grad_norm(router: ExpertRouter) -> float:
    return float(sum(p.grad.abs().sum() for p in router.parameters()
                     if p.grad is not None))


@pytest.mark.parametrize('top_k', [None, 1, 2])
def test_every_k_trains_the_router(top_k):
    """Dense, top-1 and top-2 weights all carry gradient to every router
    parameter through a loss on the mixed output."""
    router = ExpertRouter(D, CT, E, top_k=top_k)
    _sharpen(router)
    visual, sentence = _inputs()
    w = router(visual, sentence)
    if top_k is not None:
        assert ((w > 0).sum(1) == top_k).all()
    target = torch.arange(E, dtype=torch.float)
    (w * target).sum().backward()
    for name, p in router.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert _router_grad_norm(router) > 1e-3


def test_top_1_gate_is_the_chosen_probability():
    dense = ExpertRouter(D, CT, E)
    _sharpen(dense)
    top1 = ExpertRouter(D, CT, E, top_k=1)
    top1.load_state_dict(dense.state_dict())
    visual, sentence = _inputs()
    probs = dense(visual, sentence)
    gates = top1(visual, sentence)
    chosen = probs.argmax(1)
    assert torch.equal(gates.argmax(1), chosen)
    expected = torch.zeros_like(probs).scatter_(
        1, chosen[:, None], probs.gather(1, chosen[:, None]))
    assert torch.allclose(gates, expected, atol=1e-6)
    # statistics keep the full distribution, the mixture the gates
    assert torch.allclose(top1.last_weights, probs.detach(), atol=1e-6)
    assert torch.allclose(top1.last_gates, gates.detach(), atol=1e-6)
    assert top1.gate_mode == 'prob'


def test_renorm_gate_with_top_1_is_refused():
    with pytest.raises(ValueError, match='no gradient'):
        ExpertRouter(D, CT, E, top_k=1, gate='renorm')
    assert ExpertRouter(D, CT, E, top_k=2).gate_mode == 'renorm'
    assert ExpertRouter(D, CT, E, top_k=2, gate='prob').gate_mode == 'prob'


@pytest.mark.parametrize('noise', ['fixed', 'learned'])
def test_noise_only_in_training(noise):
    router = ExpertRouter(D, CT, E, noise=noise, noise_std=1.0)
    _sharpen(router, scale=0.3)
    visual, sentence = _inputs()
    router.eval()
    a, b = router(visual, sentence), router(visual, sentence)
    assert torch.equal(a, b)
    clean = ExpertRouter(D, CT, E)
    clean.load_state_dict(router.state_dict(), strict=False)
    clean.eval()
    assert torch.allclose(a, clean(visual, sentence), atol=1e-6)
    router.train()
    c, d = router(visual, sentence), router(visual, sentence)
    assert not torch.allclose(c, d)
    assert not torch.allclose(c, a)
    if noise == 'learned':
        (c.pow(2)).sum().backward()
        assert router.noise_proj.weight.grad.abs().sum() > 0


def test_noisy_top_k_selects_by_noisy_logits_in_training():
    router = ExpertRouter(D, CT, E, top_k=1, noise='fixed', noise_std=50.0)
    visual, sentence = _inputs()
    router.train()
    chosen = {int(router(visual, sentence).argmax(1)[0]) for _ in range(30)}
    assert len(chosen) > 1  # exploration: the noise changes the choice
    router.eval()
    chosen = {int(router(visual, sentence).argmax(1)[0]) for _ in range(5)}
    assert len(chosen) == 1


def test_z_losses_on_hand_computed_logits():
    router = ExpertRouter(D, CT, 3, condition='visual')
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
    with torch.no_grad():  # hidden -> logits exactly through the bias
        router.fc_out.weight.zero_()
        router.fc_out.bias.zero_()
    router(torch.randn(2, D, 3, 3), torch.randn(2, CT))
    router._live.logits = logits  # inject the logits
    # paper: ||r||^2 / (B * E)
    expected = (1 + 4 + 9 + 0 + 1 + 1) / 6
    assert router.z_loss('mean_square').item() == pytest.approx(expected)
    # ST-MoE: mean over rows of logsumexp^2
    lse = [torch.logsumexp(torch.tensor([1.0, 2.0, 3.0]), 0).item(),
           torch.logsumexp(torch.tensor([0.0, -1.0, 1.0]), 0).item()]
    assert router.z_loss('lse').item() == pytest.approx(
        (lse[0] ** 2 + lse[1] ** 2) / 2, rel=1e-6)
    with pytest.raises(ValueError, match='kind'):
        router.z_loss('l1')


def test_z_loss_has_gradient_and_ignores_noise():
    router = ExpertRouter(D, CT, E, noise='fixed', noise_std=5.0)
    _sharpen(router)
    visual, sentence = _inputs()
    router.eval()
    router(visual, sentence)
    eval_z = router.z_loss().item()
    router.train()
    router(visual, sentence)
    z = router.z_loss()
    assert z.item() == pytest.approx(eval_z, rel=1e-6)
    z.backward()
    assert router.fc_out.weight.grad.abs().sum() > 0


def test_balance_cv_scores_the_dispatched_usage_of_a_collapsed_router():
    # every sample sends its top-2 to experts 0 and 1 while the
    # probabilities stay nearly uniform
    cv = ExpertRouter(D, CT, 4, top_k=2)
    with torch.no_grad():
        cv.fc_out.weight.zero_()
        cv.fc_out.bias.copy_(torch.tensor([0.1, 0.1, 0.0, 0.0]))
    old = ExpertRouter(D, CT, 4, top_k=2, balance='cv_probs')
    old.load_state_dict(cv.state_dict())
    visual, sentence = _inputs()
    cv(visual, sentence)
    old(visual, sentence)
    # dispatched usage [0.5, 0.5, 0, 0]: CV^2 = 4 * 0.5 - 1 = 1
    assert cv.balance_loss().item() == pytest.approx(1.0, abs=1e-5)
    p = torch.softmax(torch.tensor([0.1, 0.1, 0.0, 0.0]), 0)
    assert old.balance_loss().item() == pytest.approx(
        float(4 * p.pow(2).sum() - 1), rel=1e-4)
    assert old.balance_loss().item() < 0.01
    # at the collapse itself the loss has a gradient (straight through the
    # importance): it moves probability towards the unselected experts
    cv.balance_loss().backward()
    grad = cv.fc_out.bias.grad
    assert grad[:2].min() > 0 and grad[2:].max() < 0
    # without top-k the gates are the probabilities: both forms agree
    soft = ExpertRouter(D, CT, 4)
    soft_old = ExpertRouter(D, CT, 4, balance='cv_probs')
    _sharpen(soft)
    soft_old.load_state_dict(soft.state_dict())
    soft(visual, sentence)
    soft_old(visual, sentence)
    assert soft.balance_loss().item() == pytest.approx(
        soft_old.balance_loss().item(), rel=1e-6)


def test_balance_cv_probs_uses_pre_top_k_probabilities():
    dense = ExpertRouter(D, CT, E, balance='cv_probs')
    _sharpen(dense)
    top1 = ExpertRouter(D, CT, E, top_k=1, balance='cv_probs')
    top1.load_state_dict(dense.state_dict())
    visual, sentence = _inputs()
    dense(visual, sentence)
    top1(visual, sentence)
    assert top1.balance_loss().item() == pytest.approx(
        dense.balance_loss().item(), rel=1e-6)
    loss = top1.balance_loss()
    loss.backward()
    assert top1.fc_out.weight.grad.abs().sum() > 0
    # switch: dispatch from the top-k choice, importance from the probs
    sw = ExpertRouter(D, CT, E, top_k=2, balance='switch')
    sw.load_state_dict(dense.state_dict())
    w = sw(visual, sentence)
    probs = sw.last_weights
    f = (w > 0).float().mean(0) / 2
    expected = E * (f * probs.mean(0)).sum() - 1
    assert sw.balance_loss().item() == pytest.approx(expected.item(),
                                                      rel=1e-5)


def test_assign_loss_is_normalised_entropy():
    router = ExpertRouter(D, CT, E)
    visual, sentence = _inputs()
    with torch.no_grad():
        router.fc_out.weight.zero_()
    router(visual, sentence)  # exactly uniform
    assert router.assign_loss().item() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        router.fc_out.bias.copy_(torch.tensor([30.0] + [0.0] * (E - 1)))
    router(visual, sentence)
    assert router.assign_loss().item() == pytest.approx(0.0, abs=1e-6)
    assert set(router.aux_losses()) == {'balance', 'z', 'z_lse', 'assign'}


@pytest.mark.parametrize('condition', ['visual', 'text'])
def test_condition_selects_the_router_inputs(condition):
    router = ExpertRouter(D, CT, E, condition=condition)
    _sharpen(router)
    visual, sentence = _inputs()
    w = router(visual, sentence)
    other_visual, other_sentence = _inputs(seed=5)
    if condition == 'visual':
        assert not hasattr(router, 'text_proj')
        assert torch.allclose(w, router(visual, other_sentence))
        assert not torch.allclose(w, router(other_visual, sentence))
    else:
        assert not hasattr(router, 'visual_proj')
        assert torch.allclose(w, router(other_visual, sentence))
        assert not torch.allclose(w, router(visual, other_sentence))
    with pytest.raises(ValueError, match='condition'):
        ExpertRouter(D, CT, E, condition='image')


def test_temperature_is_saved_with_the_state_dict():
    router = ExpertRouter(D, CT, E, temperature=2.0)
    router.temperature = 0.5
    fresh = ExpertRouter(D, CT, E, temperature=2.0)
    fresh.load_state_dict(router.state_dict())
    assert fresh.temperature == pytest.approx(0.5)
    # the temperature is part of the state: a strict load without it
    # reports it missing; a partial (PET) load keeps the configured value
    state = {k: v for k, v in router.state_dict().items()
             if k != '_temperature'}
    fresh = ExpertRouter(D, CT, E, temperature=2.0)
    with pytest.raises(RuntimeError, match='_temperature'):
        fresh.load_state_dict(state)
    assert fresh.load_state_dict(state, strict=False).missing_keys == [
        '_temperature']
    assert fresh.temperature == pytest.approx(2.0)
    with pytest.raises(ValueError, match='temperature'):
        router.temperature = 0.0


def test_lower_temperature_is_sharper():
    visual, sentence = _inputs()
    reference = ExpertRouter(D, CT, E)
    _sharpen(reference, scale=0.5)
    maxima = []
    for t in (4.0, 1.0, 0.25):
        router = ExpertRouter(D, CT, E)
        router.load_state_dict(reference.state_dict())
        router.temperature = t  # the state dict carries a temperature
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


def test_aux_losses_computes_only_the_requested_keys(monkeypatch):
    router = ExpertRouter(D, CT, E)
    router(*_inputs())
    calls = []
    monkeypatch.setattr(
        router, 'assign_loss',
        lambda output=None: calls.append('assign') or torch.zeros(()))
    out = router.aux_losses(('balance', ))
    assert set(out) == {'balance'} and calls == []
    assert set(router.aux_losses()) == {'balance', 'z', 'z_lse', 'assign'}
    assert calls == ['assign']
    with pytest.raises(ValueError, match='unknown auxiliary losses'):
        router.aux_losses(('entropy', ))
