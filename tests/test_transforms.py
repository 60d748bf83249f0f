"""Pipeline transforms: letterbox (and undoing it), flip, packing."""
import numpy as np
import pytest
import torch

import sera_mm  # noqa: F401
from sera_mm.datasets.transforms import (Letterbox, PackReferInputs,
                                         ReferRandomFlip, decode_segmentation,
                                         swap_left_right, undo_letterbox)
from sera_mm.datasets.transforms.loading import to_bgr3


def test_letterbox_shapes_and_undo_roundtrip():
    mask = np.zeros((60, 120), np.uint8)
    mask[10:50, 20:100] = 1
    img = np.dstack([mask * 255] * 3).astype(np.uint8)
    out = Letterbox(size=48)(dict(img=img, gt_seg_map=mask.copy(),
                                  seg_fields=['gt_seg_map']))
    assert out['img'].shape == (48, 48, 3)
    assert out['img_shape'] == (24, 48) and out['pad_shape'] == (48, 48)
    assert out['img_padding_size'] == [0, 0, 0, 24]
    assert out['scale_factor'] == (0.4, 0.4)
    assert out['gt_seg_map'][24:].sum() == 0  # padding is background
    back = undo_letterbox(torch.from_numpy(out['gt_seg_map'])[None],
                          out['img_padding_size'], (60, 120), mode='nearest')
    assert back.shape == (1, 60, 120)
    iou = ((back[0].numpy() > 0) & (mask > 0)).sum() / \
        ((back[0].numpy() > 0) | (mask > 0)).sum()
    assert iou > 0.95
    with pytest.raises(ValueError, match='size'):
        Letterbox(size=2)


def test_flip_swaps_left_right_words():
    assert swap_left_right('the Left dog, leftmost of the right ones') == \
        'the Right dog, rightmost of the left ones'
    assert swap_left_right('bright light') == 'bright light'
    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    mask = np.array([[1, 0], [0, 0]], np.uint8)
    out = ReferRandomFlip(prob=1.0)(dict(img=img, gt_seg_map=mask,
                                         seg_fields=['gt_seg_map'],
                                         text='the cat on the left'))
    assert out['text'] == 'the cat on the right' and out['flip']
    assert out['gt_seg_map'].tolist() == [[0, 1], [0, 0]]
    kept = ReferRandomFlip()(dict(img=img, text='left'))  # off by default
    assert kept['text'] == 'left' and not kept['flip']


def test_pack_keeps_text_and_ids_and_rejects_empty_text():
    res = dict(img=np.zeros((8, 8, 3), np.uint8),
               gt_seg_map=np.ones((8, 8), np.uint8), text='the cat',
               ref_id=3, sent_id=7, ann_id=1, image_id=2, category_id=5,
               expr_type='attribute', img_padding_size=[0, 1, 0, 2],
               img_path='x.png', ori_shape=(8, 8), img_shape=(8, 8))
    out = PackReferInputs()(res)
    meta = out['data_samples'].metainfo
    for key in ('text', 'ref_id', 'sent_id', 'expr_type', 'img_padding_size',
                'category_id', 'flip'):
        assert key in meta
    assert meta['text'] == 'the cat' and meta['sent_id'] == 7
    assert out['inputs'].shape == (3, 8, 8)
    with pytest.raises(ValueError, match='sent_id 7'):
        PackReferInputs()(dict(res, text='  '))


def test_decode_and_image_modes():
    poly = [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]]
    assert decode_segmentation(poly, 8, 8).sum() == 16
    with pytest.raises(ValueError, match='segmentation'):
        decode_segmentation('bad', 8, 8)
    assert to_bgr3(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_bgr3(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match='expected a grayscale'):
        to_bgr3(np.zeros((4, 5, 2), np.uint8))
