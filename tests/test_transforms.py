"""Pipeline transforms: letterbox (and undoing it), flip, packing."""
import numpy as np
import pytest
import torch

from sera_mm.datasets.transforms import (Letterbox, PackReferInputs,
                                         ReferRandomFlip, decode_segmentation,
                                         swap_left_right, undo_letterbox)
from sera_mm.utils.image_io import to_bgr3


def test_letterbox_shapes_and_undo_roundtrip():
    mask = np.zeros((60, 120), np.uint8)
    mask[10:50, 20:100] = 1  # edges on the 0.4 scale grid: exact round trip
    img = np.dstack([mask * 255] * 3).astype(np.uint8)
    out = Letterbox(size=48)(dict(img=img, gt_seg_map=mask.copy(),
                                  seg_fields=['gt_seg_map']))
    assert out['img'].shape == (48, 48, 3)
    assert out['img_shape'] == (24, 48) and out['pad_shape'] == (48, 48)
    assert out['img_padding_size'] == [0, 0, 0, 24]
    assert out['scale_factor'] == (0.4, 0.4)
    assert out['gt_seg_map'].shape == (48, 48)
    assert out['gt_seg_map'][24:].sum() == 0  # padding is background
    assert out['img'][24:].sum() == 0
    assert out['gt_seg_map'][:24].sum() == 16 * 32
    back = undo_letterbox(torch.from_numpy(out['gt_seg_map'])[None],
                          out['img_padding_size'], (60, 120), mode='nearest')
    assert back.shape == (1, 60, 120) and back.dtype == torch.uint8
    assert torch.equal(back[0], torch.from_numpy(mask))
    # 2-D input, crop exactly like mmseg's postprocess_result slicing
    back2 = undo_letterbox(torch.from_numpy(out['gt_seg_map']),
                           out['img_padding_size'], (60, 120), mode='nearest')
    assert torch.equal(back2, back[0])
    with pytest.raises(ValueError, match='size'):
        Letterbox(size=2)
    with pytest.raises(ValueError, match='data'):
        undo_letterbox(torch.zeros(1, 1, 4, 4), [0, 0, 0, 0], (4, 4))
    with pytest.raises(ValueError, match='img_padding_size'):
        undo_letterbox(torch.zeros(1, 4, 4), [0, 4, 0, 0], (4, 4))


def test_letterbox_tall_image_pads_right_and_undo_random_mask():
    rng = np.random.default_rng(0)
    mask = (rng.random((50, 20)) > 0.5).astype(np.uint8)
    mask = np.kron(mask, np.ones((2, 2), np.uint8))  # 100 x 40, 2px cells
    out = Letterbox(size=50)(dict(img=np.zeros((100, 40, 3), np.uint8),
                                  gt_seg_map=mask.copy()))  # no seg_fields
    assert out['img_shape'] == (50, 20)
    assert out['img_padding_size'] == [0, 30, 0, 0]
    assert out['gt_seg_map'].shape == (50, 50)
    assert out['gt_seg_map'][:, 20:].sum() == 0
    back = undo_letterbox(torch.from_numpy(out['gt_seg_map']),
                          out['img_padding_size'], (100, 40), mode='nearest')
    assert torch.equal(back, torch.from_numpy(mask))
    logits = undo_letterbox(torch.randn(1, 50, 50), [0, 30, 0, 0], (100, 40))
    assert logits.shape == (1, 100, 40) and logits.dtype == torch.float32


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


def test_flip_swaps_refcoco_abbreviations():
    """RefCOCO writes "lft" and "rt": swapped as whole words, case kept."""
    assert swap_left_right('lft guy') == 'rt guy'
    assert swap_left_right('rt side, Lft one, RT, LFT') == \
        'lft side, Rt one, LFT, RT'
    assert swap_left_right('far rt.') == 'far lft.'
    assert swap_left_right('(lft)') == '(rt)'
    # not inside other words
    for text in ('art shirt', 'rtx card', 'lfts', 'start', 'heartbeat'):
        assert swap_left_right(text) == text
    img = np.zeros((2, 2, 3), np.uint8)
    out = ReferRandomFlip(prob=1.0)(dict(img=img, text='2nd from rt'))
    assert out['text'] == '2nd from lft'


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


def test_rle_variants_decode_alike():
    from pycocotools import mask as mask_utils
    m = np.zeros((7, 9), np.uint8, order='F')
    m[1:4, 2:8] = 1
    rle = mask_utils.encode(m)  # counts as bytes
    as_str = dict(rle, counts=rle['counts'].decode('ascii'))
    flat = m.flatten(order='F')
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    uncompressed = dict(size=[7, 9], counts=runs)  # starts with zeros
    for seg in (rle, as_str, uncompressed):
        dec = decode_segmentation(seg, 7, 9)
        assert dec.dtype == np.uint8 and np.array_equal(dec, m)
    # a 4-number "polygon" has no area (not a box), a flat one is accepted
    assert decode_segmentation([[0, 0, 4, 4]], 8, 8).sum() == 0
    flat_poly = [0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]
    assert decode_segmentation(flat_poly, 8, 8).sum() == 16


def test_load_image_modes_and_given_image(tmp_path):
    import cv2

    from sera_mm.datasets.transforms import LoadReferImage, LoadReferMask
    path = str(tmp_path / 'deep.png')
    cv2.imwrite(path, np.full((3, 4), 0x8000, np.uint16))
    out = LoadReferImage()(dict(img_path=path))
    assert out['img'].shape == (3, 4, 3) and out['img'].dtype == np.uint8
    assert int(out['img'][0, 0, 0]) == 0x80
    assert out['ori_shape'] == (3, 4)
    with pytest.raises(FileNotFoundError, match='nope.png'):
        LoadReferImage()(dict(img_path=str(tmp_path / 'nope.png')))
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    with pytest.raises(FileNotFoundError, match='bad.png'):
        LoadReferImage()(dict(img_path=str(tmp_path / 'bad.png')))
    # inference: the image is given, there is no annotation
    given = LoadReferImage()(dict(img=np.zeros((5, 6), np.uint8),
                                  img_path='given', text='x'))
    assert given['img'].shape == (5, 6, 3) and given['ori_shape'] == (5, 6)
    kept = LoadReferMask()(dict(given))
    assert 'gt_seg_map' not in kept
    res = LoadReferMask()(dict(given, height=5, width=6,
                               segmentation=[[0, 0, 3, 0, 3, 2, 0, 2]]))
    assert res['gt_seg_map'].sum() == 6 and res['seg_fields'] == ['gt_seg_map']
    with pytest.raises(ValueError, match='ref_id 4'):
        LoadReferMask()(dict(given, height=6, width=6, ref_id=4,
                             segmentation=[[0, 0, 3, 0, 3, 2, 0, 2]]))


def test_letterbox_pads_with_a_colour_per_channel():
    from sera_mm.datasets.transforms.letterbox import Letterbox
    t = Letterbox(size=16, pad_val=[104.0, 117.0, 123.0])
    out = t(dict(img=np.zeros((8, 4, 3), np.uint8)))
    assert out['img'].shape == (16, 16, 3)
    assert out['img'][0, 0].tolist() == [0, 0, 0]
    assert out['img'][15, 15].tolist() == [104, 117, 123]
    with pytest.raises(ValueError, match='pad_val'):
        Letterbox(size=16, pad_val=[1.0, 2.0])
    with pytest.raises(ValueError, match='pad_val'):
        Letterbox(size=16, pad_val='mean')


def test_decoded_image_cache_serves_copies_within_its_bound(tmp_path):
    import cv2
    from sera_mm.datasets.transforms import LoadReferImage
    paths = []
    for i in range(2):
        img = np.full((8, 6, 3), 40 * (i + 1), np.uint8)
        img[0, 0] = (1, 2, 3)
        paths.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(paths[-1], img)
    load = LoadReferImage(cache_max_bytes=8 * 6 * 3)  # one image fits
    first = load(dict(img_path=paths[0]))['img']
    (tmp_path / '0.png').unlink()  # a repeat read is served from memory
    again = load(dict(img_path=paths[0]))['img']
    assert np.array_equal(first, again) and tuple(again[0, 0]) == (1, 2, 3)
    again[:] = 0  # a copy: the cached image is untouched
    assert tuple(load(dict(img_path=paths[0]))['img'][0, 0]) == (1, 2, 3)
    load(dict(img_path=paths[1]))  # evicts the first (bound: one image)
    assert load._cache_bytes == 8 * 6 * 3 and list(load._cache) == [paths[1]]
    with pytest.raises(FileNotFoundError, match='0.png'):
        load(dict(img_path=paths[0]))
    # off by default; an image larger than the bound is never kept
    assert LoadReferImage().cache_max_bytes == 0
    small = LoadReferImage(cache_max_bytes=10)
    small(dict(img_path=paths[1]))
    assert not small._cache
    with pytest.raises(ValueError, match='cache_max_bytes must be an int'):
        LoadReferImage(cache_max_bytes=-1)
