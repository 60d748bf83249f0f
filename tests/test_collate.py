"""refer_collate + ReferDataPreProcessor: batches stacked in the workers,
preprocessed to exactly what mmseg's SegDataPreProcessor makes of
pseudo_collate's lists."""
import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.structures import SegDataSample

from sera_mm.datasets import refer_collate
from sera_mm.models import ReferDataPreProcessor
from sera_mm.utils import register_all_modules

register_all_modules()

PRE = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
           bgr_to_rgb=True, pad_val=0, seg_pad_val=0, size=(48, 48))


def _pipeline_outputs(root, split='train', n=6, size=48, test=False):
    from sera_mm.datasets import SyntheticReferDataset
    pipeline = [dict(type='LoadReferImage'), dict(type='LoadReferMask'),
                dict(type='Letterbox', size=size),
                dict(type='PackReferInputs')]
    if test:  # masks at the original resolution, as the test pipeline
        pipeline = [pipeline[0], pipeline[2], pipeline[1], pipeline[3]]
    ds = SyntheticReferDataset(data_root=root, split=split,
                               pipeline=pipeline, test_mode=test)
    return [ds[i] for i in range(n)]


def _meta(samples, keys=('img_shape', 'pad_shape', 'padding_size')):
    return [tuple(tuple(s.metainfo.get(k)) if s.metainfo.get(k) is not None
                  else None for k in keys) for s in samples]


@pytest.mark.parametrize('training', [True, False])
def test_stacked_batch_matches_mmseg_bit_for_bit(synthetic_tiny_root,
                                                 training):
    items = _pipeline_outputs(synthetic_tiny_root, test=not training)
    listed = pseudo_collate(copy.deepcopy(items))
    stacked = refer_collate(copy.deepcopy(items))
    assert isinstance(stacked['inputs'], torch.Tensor)
    assert stacked['inputs'].shape == (6, 3, 48, 48)
    assert stacked['inputs'].dtype == torch.uint8
    if training:  # letterboxed masks: stacked, taken out of the samples
        assert stacked['gt_sem_seg'].shape == (6, 1, 48, 48)
        assert all('data' not in s.gt_sem_seg
                   for s in stacked['data_samples'])
    else:  # original-size masks of the test pipeline: stacked too (64 px)
        assert stacked['gt_sem_seg'].shape == (6, 1, 64, 64)

    ref = SegDataPreProcessor(**PRE)(listed, training)
    samples = stacked['data_samples']
    out = ReferDataPreProcessor(**PRE)(stacked, training)
    assert out['inputs'].dtype == torch.float32
    assert torch.equal(out['inputs'], ref['inputs'])
    assert out['inputs'].is_contiguous()
    assert _meta(out['data_samples']) == _meta(ref['data_samples'])
    for a, b in zip(out['data_samples'], ref['data_samples']):
        assert torch.equal(a.gt_sem_seg.data, b.gt_sem_seg.data)
    # the masks are back in the batch's own samples (what hooks see)
    assert all('data' in s.gt_sem_seg for s in samples)
    assert 'gt_sem_seg' in stacked  # the caller's batch keeps its keys


def test_mixed_shapes_stay_lists_and_padding_takes_mmsegs_path():
    def sample(h, w):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, 2, (1, h, w), dtype=torch.int64))
        return dict(inputs=torch.randint(0, 255, (3, h, w),
                                         dtype=torch.uint8), data_samples=s)

    mixed = [sample(40, 48), sample(48, 40)]
    batch = refer_collate(copy.deepcopy(mixed))
    assert isinstance(batch['inputs'], list) and 'gt_sem_seg' not in batch
    assert all('data' in s.gt_sem_seg for s in batch['data_samples'])
    out = ReferDataPreProcessor(**PRE)(batch, True)
    ref = SegDataPreProcessor(**PRE)(pseudo_collate(copy.deepcopy(mixed)),
                                     True)
    assert out['inputs'].shape == (2, 3, 48, 48)
    assert torch.equal(out['inputs'], ref['inputs'])
    assert _meta(out['data_samples']) == _meta(ref['data_samples'])

    # one shape smaller than `size`: stacked, then padded by mmseg's code
    small = [sample(40, 40), sample(40, 40)]
    batch = refer_collate(copy.deepcopy(small))
    assert isinstance(batch['inputs'], torch.Tensor)
    out = ReferDataPreProcessor(**PRE)(batch, True)
    ref = SegDataPreProcessor(**PRE)(pseudo_collate(copy.deepcopy(small)),
                                     True)
    assert torch.equal(out['inputs'], ref['inputs'])
    assert out['data_samples'][0].padding_size == (0, 8, 0, 8)
    for a, b in zip(out['data_samples'], ref['data_samples']):
        assert torch.equal(a.gt_sem_seg.data, b.gt_sem_seg.data)
        assert a.gt_sem_seg.shape == (48, 48)


def test_bad_stacked_batches_are_named():
    pre = ReferDataPreProcessor(**PRE)
    with pytest.raises(ValueError, match=r'\(B, C, H, W\), got shape '
                       r'\(3, 48, 48\)'):
        pre(dict(inputs=torch.zeros(3, 48, 48, dtype=torch.uint8),
                 data_samples=[SegDataSample()]), False)
    s = SegDataSample()
    s.gt_sem_seg = PixelData()
    with pytest.raises(ValueError, match=r'B = 1 samples, got shape '
                       r'\(2, 1, 48, 48\)'):
        pre(dict(inputs=torch.zeros(1, 3, 48, 48, dtype=torch.uint8),
                 data_samples=[s],
                 gt_sem_seg=torch.zeros(2, 1, 48, 48)), True)


def test_configured_dataloader_collates_in_a_worker(synthetic_tiny_root):
    """The config name resolves through mmengine's runner, and a worker
    process hands over the stacked batch."""
    cfg = dict(
        batch_size=4, num_workers=1, persistent_workers=False,
        collate_fn=dict(type='sera_mm.refer_collate'),
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='SyntheticReferDataset', data_root=synthetic_tiny_root,
            split='train', pipeline=[
                dict(type='LoadReferImage'), dict(type='LoadReferMask'),
                dict(type='Letterbox', size=48),
                dict(type='PackReferInputs')]))
    batch = next(iter(Runner.build_dataloader(cfg, seed=0)))
    assert batch['inputs'].shape == (4, 3, 48, 48)
    assert batch['gt_sem_seg'].shape == (4, 1, 48, 48)
    out = ReferDataPreProcessor(**PRE)(batch, True)
    assert out['inputs'].shape == (4, 3, 48, 48)
    assert [tuple(s.gt_sem_seg.shape) for s in out['data_samples']] == [
        (48, 48)] * 4
    assert all(s.text for s in out['data_samples'])
