"""Frozen-prefix cache of the MobileNetV2 backbone: same outputs and
gradients as without it, one computation per distinct input, bounded."""
import pytest
import torch

from sera_mm.models.backbones import MobileNetV2Backbone
from sera_mm.models.backbones.prefix_cache import (FrozenPrefixCache,
                                                   tensor_key)
from sera_mm.structures import TextFeatures

ADAPTER = dict(type='SERAAdapter', hidden_channels=8,
               experts=('spatial', 'semantic'),
               router=dict(type='ExpertRouter', hidden_channels=8),
               num_heads=2)


def _pair(**kw):
    torch.manual_seed(0)
    plain = MobileNetV2Backbone(out_indices=(6, 13), adapter=ADAPTER,
                                adapter_indices=(10, ), text_channels=6,
                                frozen_stages=7, **kw)
    cached = MobileNetV2Backbone(out_indices=(6, 13), adapter=ADAPTER,
                                 adapter_indices=(10, ), text_channels=6,
                                 frozen_stages=7, prefix_cache=16, **kw)
    cached.load_state_dict(plain.state_dict())
    return plain, cached


def _text(b):
    g = torch.Generator().manual_seed(1)
    return TextFeatures(torch.randn(b, 3, 6, generator=g),
                        torch.zeros(b, 3, dtype=torch.bool),
                        torch.randn(b, 6, generator=g))


def test_same_outputs_and_gradients_and_one_run_per_image():
    plain, cached = _pair()
    plain.train(), cached.train()
    x = torch.randn(3, 3, 64, 64)
    calls = []
    cached.encoder.features[0].register_forward_hook(
        lambda m, i, o: calls.append(i[0].shape[0]))
    for step in range(2):
        a = plain(x, _text(3))
        b = cached(x, _text(3))
        for u, v in zip(a, b):
            assert torch.allclose(u, v, atol=1e-5)
        sum(o.sum() for o in a).backward()
        sum(o.sum() for o in b).backward()
    assert calls == [3]  # the second step was served from the cache
    assert cached.prefix_cache.hits == 3 and cached.prefix_cache.misses == 3
    for (n, p), (_, q) in zip(plain.named_parameters(),
                              cached.named_parameters()):
        if p.requires_grad:
            assert torch.allclose(p.grad, q.grad, atol=1e-4), n
    # a changed input is a new key; a batch mixing old and new computes the
    # new sample only
    y = torch.cat([x[:1], x[1:2] + 1e-3])
    cached(y, _text(2))
    assert calls == [3, 1]
    # loading weights clears it
    cached.load_state_dict(plain.state_dict())
    assert len(cached.prefix_cache) == 0


def test_cache_bounds_and_keys():
    cache = FrozenPrefixCache(2)
    fn = lambda t: t * 2  # noqa: E731
    x = torch.arange(12.).reshape(3, 4)
    out = cache(x, fn)
    assert torch.equal(out, x * 2) and len(cache) == 2
    assert cache.nbytes == 2 * 4 * 4
    small = FrozenPrefixCache(10, max_bytes=16)
    small(x, fn)
    assert len(small) == 1
    assert tensor_key(x[0]) != tensor_key(x[0].double())
    assert tensor_key(x[0]) == tensor_key(x[0].clone())
    with pytest.raises(ValueError, match='max_entries'):
        FrozenPrefixCache(0)


def test_refuses_blocks_that_are_not_frozen_or_feed_adapters():
    with pytest.raises(ValueError, match='prefix_cache needs'):
        MobileNetV2Backbone(out_indices=(6, 13), frozen_stages=-1,
                            prefix_cache=8)
    with pytest.raises(ValueError, match='prefix_cache needs'):
        MobileNetV2Backbone(out_indices=(3, 13), frozen_stages=7,
                            prefix_cache=8)
    with pytest.raises(ValueError, match='prefix_cache needs'):
        MobileNetV2Backbone(out_indices=(6, 13), adapter=ADAPTER,
                            adapter_indices=(4, ), text_channels=6,
                            frozen_stages=7, prefix_cache=8)


def test_tensor_key_reads_channels_last_samples_in_place():
    torch.manual_seed(0)
    batch = torch.randn(2, 3, 5, 4)
    nhwc = batch.contiguous(memory_format=torch.channels_last)
    # the same sample in the same layout: the same key, also from a copy
    assert tensor_key(nhwc[0]) == tensor_key(nhwc.clone(
        memory_format=torch.channels_last)[0])
    # one value changed in one channel: another key
    changed = nhwc.clone(memory_format=torch.channels_last)
    changed[0, 2, 4, 3] += 1e-3
    assert tensor_key(changed[0]) != tensor_key(nhwc[0])
    assert tensor_key(nhwc[0]) != tensor_key(nhwc[1])
    # another layout of the same values is another key (never a hit on
    # another sample); a strided view that is no layout is copied first
    assert tensor_key(nhwc[0]) != tensor_key(batch[0])
    view = batch[0, :, ::2]
    assert tensor_key(view) == tensor_key(view.contiguous())
    # every dtype is hashed as raw bytes, bfloat16 and bool included
    bf = batch[0].bfloat16()
    bf2 = bf.clone()
    bf2[1, 2, 3] += 1
    assert tensor_key(bf) == tensor_key(bf.clone())
    assert tensor_key(bf2) != tensor_key(bf)
    mask = batch[0] > 0
    flipped = mask.clone()
    flipped[0, 0, 0] = ~flipped[0, 0, 0]
    assert tensor_key(flipped) != tensor_key(mask)
    assert len(tensor_key(bf)) == 16
    assert tensor_key(torch.empty(0, 3)) != tensor_key(torch.empty(3, 0))


def test_cache_serves_channels_last_batches_by_value():
    cache = FrozenPrefixCache(8)
    calls = []

    def fn(t):
        calls.append(t.shape[0])
        return t.mean(dim=(2, 3))

    torch.manual_seed(1)
    x = torch.randn(3, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    first = cache(x, fn)
    again = cache(x.clone(memory_format=torch.channels_last)[[2, 0]], fn)
    assert calls == [3]
    assert torch.equal(again, first[[2, 0]])
