"""mix_experts: the weighted mixture, sparse execution for top-k routing."""
import pytest
import torch
import torch.nn as nn

from sera_mm.models.routers import ExpertRouter, mix_experts


class _Counting(nn.Module):
    """x -> scale * x, recording the batch size of every call."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return x * self.scale


def _experts(n=3):
    return nn.ModuleList([_Counting(float(i + 1)) for i in range(n)])


def test_dense_mixture_is_the_weighted_sum():
    experts = _experts()
    x = torch.randn(4, 2, 3, 3)
    w = torch.softmax(torch.randn(4, 3), 1)
    out = mix_experts(experts, x, w)
    expected = sum(w[:, e, None, None, None] * x * (e + 1) for e in range(3))
    assert torch.allclose(out, expected, atol=1e-6)
    assert all(m.batches == [4] for m in experts)


def test_sparse_weights_run_each_expert_on_its_samples_only():
    experts = _experts()
    x = torch.randn(4, 2, 3, 3)
    w = torch.tensor([[0.7, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 0.9],
                      [0.8, 0.0, 0.0]], requires_grad=True)
    out = mix_experts(experts, x, w)
    assert [m.batches for m in experts] == [[2], [1], [1]]
    expected = torch.stack([0.7 * x[0] * 1, 0.6 * x[1] * 2, 0.9 * x[2] * 3,
                            0.8 * x[3] * 1])
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert w.grad[0, 0] != 0 and w.grad[1, 1] != 0
    assert all(m.scale.grad is not None for m in experts)


def test_an_expert_no_sample_chose_is_not_run_but_gets_a_zero_grad():
    experts = _experts()
    x = torch.randn(2, 2, 3, 3)
    w = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.4, 0.0]])
    out = mix_experts(experts, x, w)
    assert experts[2].batches == []
    out.sum().backward()  # DDP needs a gradient for every parameter
    assert experts[2].scale.grad is not None
    assert experts[2].scale.grad.item() == 0.0
    assert experts[0].scale.grad.item() != 0.0


def test_per_location_weights_run_densely():
    experts = _experts()
    x = torch.randn(2, 2, 3, 3)
    w = torch.softmax(torch.randn(2, 3, 3, 3), 1)
    out = mix_experts(experts, x, w)
    expected = sum(w[:, e:e + 1] * x * (e + 1) for e in range(3))
    assert torch.allclose(out, expected, atol=1e-6)


def test_top1_router_with_sparse_mixture_trains_the_router():
    torch.manual_seed(0)
    router = ExpertRouter(2, 5, 3, top_k=1, init_std=1.0)
    experts = _experts()
    x, s = torch.randn(6, 2, 3, 3), torch.randn(6, 5)
    w = router(x, s)
    out = mix_experts(experts, x, w)
    assert sum(len(m.batches) and sum(m.batches) for m in experts) == 6
    out.pow(2).mean().backward()
    assert router.fc_out.weight.grad.abs().sum() > 1e-4


def test_bad_weight_shapes_raise():
    with pytest.raises(ValueError, match='weights must have shape'):
        mix_experts(_experts(), torch.randn(2, 2, 3, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match='every routing weight is zero'):
        mix_experts(_experts(), torch.randn(2, 2, 3, 3), torch.zeros(2, 3))
