"""SERAHead and the vision-language decoder."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.models.heads import (SERAHead, VLTransformerDecoder,  # noqa
                                  sine_position_encoding_2d)
from sera_mm.structures import TextFeatures  # noqa

C_F, C_T = 12, 10


def _text(b=2, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, length, C_T, generator=g)
    pad = torch.zeros(b, length, dtype=torch.bool)
    pad[0, 3:] = True  # sample 0 has 3 real words
    return TextFeatures(words, pad, torch.randn(b, C_T, generator=g))


def _head(**kw):
    cfg = dict(in_channels=C_F, channels=16, text_channels=C_T, num_layers=2,
               num_heads=2, ffn_channels=32, dropout=0.0)
    cfg.update(kw)
    torch.manual_seed(0)
    return SERAHead(**cfg).eval()


def _sample(mask):
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=mask[None].long())
    return s


@pytest.mark.parametrize('norm_first', [True, False])
def test_forward_shape_is_four_times_grid(norm_first):
    head = _head(norm_first=norm_first)
    out = head((torch.randn(2, C_F, 5, 7), _text()))
    assert out.shape == (2, 1, 20, 28)
    assert torch.isfinite(out).all()


def test_num_upsample_sets_factor():
    head = _head(num_upsample=1)
    assert head((torch.randn(2, C_F, 5, 7), _text())).shape == (2, 1, 10, 14)


def test_sentence_kernel_is_per_sample():
    head = _head()
    fused, text = torch.randn(2, C_F, 4, 4), _text()
    base = head((fused, text))
    sent = text.sentence.clone()
    sent[1] += 1.0
    out = head((fused, text._replace(sentence=sent)))
    assert torch.equal(out[0], base[0])
    assert not torch.allclose(out[1], base[1])


@pytest.mark.parametrize('kernel_size', [1, 3, 5])
@pytest.mark.parametrize('channels_last', [False, True])
def test_dynamic_conv_equals_grouped_convolution(kernel_size, channels_last):
    """The per-sample kernels give a grouped convolution's values and
    gradients (zero padding k // 2, sentence-generated bias)."""
    head = _head(kernel_size=kernel_size).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, head.proj_channels, 6, 9, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    sentence = torch.randn(3, C_T, generator=g)

    def reference(x):
        b, p, h, w = x.shape
        k = kernel_size
        params = head.kernel_gen(sentence)
        return F.conv2d(x.reshape(1, b * p, h, w),
                        params[:, :-1].reshape(b, p, k, k),
                        bias=params[:, -1], padding=k // 2,
                        groups=b).reshape(b, 1, h, w)

    out = head.dynamic_conv(x, sentence)
    ref = reference(x)
    assert out.shape == (3, 1, 6, 9)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    weight = head.kernel_gen.weight
    grads = torch.autograd.grad((out * ref.detach()).sum(), [x, weight])
    ref_grads = torch.autograd.grad((ref * ref.detach()).sum(), [x, weight])
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_padded_words_are_ignored():
    head = _head()
    fused, text = torch.randn(2, C_F, 4, 4), _text()
    base = head((fused, text))
    words = text.words.clone()
    words[0, 3:] = 100.0  # padding of sample 0
    out = head((fused, text._replace(words=words)))
    assert torch.allclose(out, base, atol=1e-5)
    words[0, 0] = 100.0  # a real word
    assert not torch.allclose(head((fused, text._replace(words=words))), base)


def test_input_errors_name_the_problem():
    head = _head()
    with pytest.raises(ValueError, match='fused map'):
        head((torch.randn(2, C_F + 1, 4, 4), _text()))
    with pytest.raises(ValueError, match='text.words'):
        head((torch.randn(3, C_F, 4, 4), _text()))
    with pytest.raises(ValueError, match='inputs'):
        head(torch.randn(2, C_F, 4, 4))
    with pytest.raises(ValueError, match='out_channels'):
        SERAHead(C_F, 16, C_T, out_channels=2)


def test_loss_matches_hand_computed_bce_and_dice():
    head = _head()
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 6, 6, generator=g)
    labels = (torch.rand(2, 6, 6, generator=g) > 0.6).long()
    losses = head.loss_by_feat(logits, [_sample(m) for m in labels])

    bce = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    p = logits.sigmoid().flatten(1)
    t = labels.float().flatten(1)
    eps = 1e-3
    dice = 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + eps +
                                     (t * t).sum(1) + eps)
    assert torch.allclose(losses['loss_ce'], bce, atol=1e-6)
    assert torch.allclose(losses['loss_dice'], dice.mean(), atol=1e-6)
    acc = ((logits[:, 0].sigmoid() > 0.35) == (labels == 1)).float().mean()
    assert torch.allclose(losses['acc_seg'], acc * 100, atol=1e-4)


def test_dice_scores_the_foreground():
    head = _head()
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, 2:5, 2:5] = 1
    good = torch.where(labels[:, None] == 1, 20.0, -20.0)
    bad = -good
    l_good = head.loss_by_feat(good, [_sample(labels[0])])
    l_bad = head.loss_by_feat(bad, [_sample(labels[0])])
    assert l_good['loss_dice'] < 0.01
    assert l_bad['loss_dice'] > 0.99
    assert l_good['acc_seg'] == pytest.approx(100.0)


def test_loss_resizes_logits_to_label_size_and_ignores():
    head = _head()
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    labels = torch.ones(1, 16, 16, dtype=torch.long)
    labels[:, :8] = 255
    losses = head.loss_by_feat(logits, [_sample(labels[0])])
    assert losses['acc_seg'] == pytest.approx(100.0)  # 0.5 > 0.35 on valid
    (losses['loss_ce'] + losses['loss_dice']).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='binary'):
        head.loss_by_feat(logits, [_sample(labels[0] * 0 + 3)])
    # one bad pixel among valid and ignored ones is enough, either sign
    for bad in (2, -1):
        wrong = labels[0].clone()
        wrong[12, 3] = bad
        with pytest.raises(ValueError, match=rf'got values .*{bad}'):
            head.loss_by_feat(logits, [_sample(wrong)])


def test_loss_and_predict_entry_points():
    head = _head().train()
    fused, text = torch.randn(2, C_F, 4, 4), _text()
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 4:20, 4:20] = 1
    losses = head.loss((fused, text), [_sample(m) for m in masks], None)
    assert {'loss_ce', 'loss_dice', 'acc_seg'} <= set(losses)
    total = losses['loss_ce'] + losses['loss_dice']
    total.backward()
    assert head.kernel_gen.weight.grad.abs().sum() > 0
    assert not hasattr(head, 'conv_seg')
    head.eval()
    metas = [dict(img_shape=(30, 32), pad_shape=(32, 32))] * 2
    out = head.predict((fused, text), metas, None)
    assert out.shape == (2, 1, 32, 32)


def test_sine_position_encoding():
    pos = sine_position_encoding_2d(8, 3, 4)
    assert pos.shape == (12, 8)
    assert torch.unique(pos, dim=0).shape[0] == 12  # all positions differ
    assert pos.abs().max() <= 1.0
    with pytest.raises(ValueError, match='multiple of 4'):
        sine_position_encoding_2d(6, 2, 2)


def test_decoder_all_padding_row_stays_finite():
    dec = VLTransformerDecoder(8, num_layers=1, num_heads=2, ffn_channels=16,
                               dropout=0.0).eval()
    x, words = torch.randn(2, 8, 3, 3), torch.randn(2, 4, 8)
    pad = torch.zeros(2, 4, dtype=torch.bool)
    pad[1] = True
    assert torch.isfinite(dec(x, words, pad)).all()
    with pytest.raises(ValueError, match='pad_mask'):
        dec(x, words, pad[:, :3])
