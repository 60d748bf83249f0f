"""BatchFirstAttention: nn.MultiheadAttention(batch_first=True) computed
batch first, with the same parameters and results."""
import pytest
import torch
import torch.nn as nn

from sera_mm.models.layers import BatchFirstAttention


def _pair(embed=16, heads=4, kdim=None, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(embed, heads, kdim=kdim, vdim=kdim,
                                bias=bias, batch_first=True)
    ours = BatchFirstAttention(embed, heads, kdim=kdim, vdim=kdim, bias=bias)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _check(ref, ours, make_args, **kw):
    """Same outputs and same gradients (inputs and parameters)."""
    outs, grads = [], []
    for m in (ref, ours):
        m.zero_grad()
        args, leaves = make_args()
        out = m(*args, need_weights=False, **kw)
        assert out[1] is None
        (out[0] * torch.linspace(-1, 1, out[0].numel()).view_as(
            out[0])).sum().backward()
        outs.append(out[0])
        grads.append([a.grad for a in leaves] +
                     [p.grad for p in m.parameters()])
    assert outs[0].shape == outs[1].shape
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    assert len(grads[0]) == len(grads[1])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-5)


def _leaf(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_()


@pytest.mark.parametrize('bias', [True, False])
def test_self_attention_matches_multihead_attention(bias):
    ref, ours = _pair(bias=bias)

    def qqq():  # one tensor as query, key and value
        x = _leaf(3, 7, 16, seed=1)
        return (x, x, x), [x]

    def qqx():  # query = key (with position), value apart (the decoder)
        x = _leaf(3, 7, 16, seed=1)
        q = x + torch.ones(7, 16)
        return (q, q, x), [x]

    def abc():  # three different tensors
        args = (_leaf(3, 7, 16, seed=1), _leaf(3, 5, 16, seed=2),
                _leaf(3, 5, 16, seed=3))
        return args, list(args)

    for make in (qqq, qqx, abc):
        _check(ref, ours, make)


@pytest.mark.parametrize('same_kv', [True, False])
def test_cross_attention_with_other_key_width_and_padding(same_kv):
    ref, ours = _pair(kdim=12)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[0, 3:] = True
    pad[2, 1:] = True

    def make():
        q, w = _leaf(3, 7, 16, seed=1), _leaf(3, 5, 12, seed=2)
        if same_kv:
            return (q, w, w), [q, w]
        v = _leaf(3, 5, 12, seed=3)
        return (q, w, v), [q, w, v]

    _check(ref, ours, make, key_padding_mask=pad)
    # a float mask is added to the scores, as in nn.MultiheadAttention
    _check(ref, ours, make,
           key_padding_mask=torch.where(pad, -1e4, 0.0))


def test_padded_words_do_not_change_the_output():
    _, ours = _pair(kdim=12)
    ours.eval()
    q, w = torch.randn(1, 4, 16), torch.randn(1, 5, 12)
    pad = torch.tensor([[False, False, True, True, True]])
    noisy = w.clone()
    noisy[:, 2:] = 100.0
    a = ours(q, w, w, key_padding_mask=pad, need_weights=False)[0]
    b = ours(q, noisy, noisy, key_padding_mask=pad, need_weights=False)[0]
    torch.testing.assert_close(a, b)


def test_weights_and_masks_it_does_not_cover_go_to_multihead_attention():
    ref, ours = _pair()
    x = torch.randn(2, 6, 16)
    out, weights = ours(x, x, x)  # need_weights defaults to True
    ref_out, ref_weights = ref(x, x, x)
    assert weights.shape == (2, 6, 6)
    torch.testing.assert_close(weights, ref_weights)
    torch.testing.assert_close(out, ref_out)
    causal = torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)
    torch.testing.assert_close(
        ours(x, x, x, attn_mask=causal, need_weights=False)[0],
        ref(x, x, x, attn_mask=causal, need_weights=False)[0])


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    m = BatchFirstAttention(16, 4, dropout=0.5)
    x = torch.randn(2, 6, 16)
    m.eval()
    a = m(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(a, m(x, x, x, need_weights=False)[0])
    m.train()
    b = m(x, x, x, need_weights=False)[0]
    assert not torch.allclose(a, b)


def test_shape_errors_name_the_input():
    _, ours = _pair(kdim=12)
    q, w = torch.randn(2, 4, 16), torch.randn(2, 5, 12)
    with pytest.raises(ValueError, match=r'query must have shape'):
        ours(torch.randn(2, 4, 8), w, w, need_weights=False)
    with pytest.raises(ValueError, match=r'key and value'):
        ours(q, w, torch.randn(2, 6, 12), need_weights=False)
    with pytest.raises(ValueError, match=r'key and value'):
        ours(q, torch.randn(3, 5, 12), torch.randn(3, 5, 12),
             need_weights=False)
    with pytest.raises(ValueError, match=r'key_padding_mask must have shape'
                       r' \(2, 5\)'):
        ours(q, w, w, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool),
             need_weights=False)


def test_model_attention_layers_use_it():
    """The word cross-attention, the decoder and the paper's context
    expert build BatchFirstAttention (their state-dict keys are those of
    nn.MultiheadAttention, so checkpoints load unchanged)."""
    from sera_mm.models.heads import VLTransformerDecoder
    from sera_mm.models.layers import WordCrossAttention
    from sera_mm.models.necks.paper_fusion_experts import \
        PaperContextFusionExpert
    mods = [WordCrossAttention(16, 12), VLTransformerDecoder(16, 12),
            PaperContextFusionExpert(16, num_heads=4)]
    for mod in mods:
        attns = [m for m in mod.modules()
                 if isinstance(m, nn.MultiheadAttention)]
        assert attns and all(isinstance(m, BatchFirstAttention)
                             for m in attns), type(mod).__name__
