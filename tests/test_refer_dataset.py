"""ReferDataset on a tiny fixture in the public REFER format."""
import json
import os.path as osp
import pickle
import struct

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sera_mm.datasets import ReferDataset, SyntheticReferDataset
from sera_mm.datasets import synthetic_dataset


def _sent(sid, text, expr_type=None):
    s = dict(sent_id=sid, sent=text, raw=text, tokens=text.split())
    if expr_type:
        s['expr_type'] = expr_type
    return s


class Py2Pickler(pickle._Pickler):
    """Writes ``str`` as python-2 byte strings (SHORT_BINSTRING/BINSTRING
    holding UTF-8), like the pickles released with the REFER toolkit."""
    dispatch = pickle._Pickler.dispatch.copy()

    def save_str(self, obj):
        data = obj.encode('utf-8')
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_str


def make_refer(root, empty_sentence=False, missing_ann=False, py2=False,
               no_sentences=False):
    """Three refs on two images: polygon, compressed RLE, uncompressed RLE.
    Image 1 is grayscale JPEG-like PNG, image 2 RGBA."""
    img_dir = osp.join(root, 'images')
    import os
    os.makedirs(img_dir, exist_ok=True)
    cv2.imwrite(osp.join(img_dir, 'a.png'), np.full((20, 30), 128, np.uint8))
    rgba = np.zeros((24, 16, 4), np.uint8)
    rgba[..., 2] = 200
    rgba[..., 3] = 255
    cv2.imwrite(osp.join(img_dir, 'b.png'), rgba)
    square = [[5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]]  # 10 x 10
    m = np.zeros((24, 16), np.uint8, order='F')
    m[2:6, 3:7] = 1  # 16 px
    rle = mask_utils.encode(m)
    rle['counts'] = rle['counts'].decode('ascii')
    m2 = np.zeros((20, 30), np.uint8)
    m2[0:2, 0:3] = 1  # 6 px; uncompressed counts, column-major
    flat = m2.flatten(order='F')
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            run, cur = 0, v
        run += 1
    counts.append(run)
    instances = dict(
        images=[dict(id=1, file_name='a.png', height=20, width=30),
                dict(id=2, file_name='b.png', height=24, width=16)],
        annotations=[
            dict(id=10, image_id=1, category_id=1, segmentation=square,
                 area=100, bbox=[5, 5, 10, 10], iscrowd=0),
            dict(id=11, image_id=2, category_id=2, segmentation=rle,
                 area=16, bbox=[3, 2, 4, 4], iscrowd=0),
            dict(id=12, image_id=1, category_id=1,
                 segmentation=dict(size=[20, 30], counts=counts),
                 area=6, bbox=[0, 0, 3, 2], iscrowd=0)],
        categories=[dict(id=1, name='dog', supercategory='animal'),
                    dict(id=2, name='cat', supercategory='animal')])
    refs = [
        dict(ref_id=0, ann_id=10, image_id=1, split='train', category_id=1,
             file_name='a_10.png', sent_ids=[0, 1, 2],
             sentences=[_sent(0, 'the left dog', 'spatial'),
                        _sent(1, 'dog on the left', 'spatial'),
                        _sent(2, 'big dog', 'attribute')]),
        dict(ref_id=1, ann_id=11, image_id=2, split='val', category_id=2,
             file_name='b_11.png', sent_ids=[3],
             sentences=[] if no_sentences else [_sent(3, 'the cat')]),
        dict(ref_id=2, ann_id=99 if missing_ann else 12, image_id=1,
             split='train', category_id=1, file_name='a_12.png',
             sent_ids=[4, 5],
             sentences=[_sent(4, '' if empty_sentence else 'small dog'),
                        _sent(5, 'tiny dog')]),
    ]
    if py2:
        refs[1]['sentences'][0]['raw'] = 'the caf\u00e9 cat'
    with open(osp.join(root, 'refs(unc).p'), 'wb') as f:
        if py2:
            Py2Pickler(f, protocol=2).dump(refs)
        else:
            pickle.dump(refs, f, protocol=2)
    with open(osp.join(root, 'instances.json'), 'w') as f:
        json.dump(instances, f)
    return root


TRAIN_PIPE = [dict(type='LoadReferImage'), dict(type='LoadReferMask'),
              dict(type='Letterbox', size=32), dict(type='PackReferInputs')]
TEST_PIPE = [dict(type='LoadReferImage'), dict(type='Letterbox', size=32),
             dict(type='LoadReferMask'), dict(type='PackReferInputs')]


def build(root, **kw):
    args = dict(data_root=str(root), split_by='unc', split='train',
                data_prefix=dict(img_path='images'), pipeline=TRAIN_PIPE)
    args.update(kw)
    return ReferDataset(**args)


def test_items_per_mode_and_random_sentence(tmp_path):
    make_refer(tmp_path)
    assert len(build(tmp_path)) == 2  # refs
    assert len(build(tmp_path, train_mode='sentence')) == 5
    assert len(build(tmp_path, test_mode=True)) == 5
    assert len(build(tmp_path, split='val', test_mode=True)) == 1
    ds = build(tmp_path, pipeline=[])
    texts = {ds[0]['text'] for _ in range(60)}
    assert texts == {'the left dog', 'dog on the left', 'big dog'}


def test_samples_masks_and_metainfo(tmp_path):
    make_refer(tmp_path)
    ds = build(tmp_path, test_mode=True, pipeline=TEST_PIPE)
    by_sent = {ds[i]['data_samples'].sent_id: ds[i] for i in range(len(ds))}
    s0 = by_sent[0]['data_samples']
    assert s0.text == 'the left dog' and s0.ref_id == 0 and s0.ann_id == 10
    assert s0.expr_type == 'spatial' and s0.image_id == 1
    assert by_sent[0]['inputs'].shape == (3, 32, 32)
    # test pipeline keeps the GT at the original resolution
    assert tuple(s0.gt_sem_seg.data.shape) == (1, 20, 30)
    assert int(s0.gt_sem_seg.data.sum()) == 100  # polygon square 10 x 10
    assert int(by_sent[4]['data_samples'].gt_sem_seg.data.sum()) == 6
    assert by_sent[4]['data_samples'].expr_type is None
    val = build(tmp_path, split='val', test_mode=True, pipeline=TEST_PIPE)[0]
    assert int(val['data_samples'].gt_sem_seg.data.sum()) == 16  # RLE
    assert val['data_samples'].img_padding_size == [0, 11, 0, 0]
    train = build(tmp_path, pipeline=TRAIN_PIPE)[0]
    assert tuple(train['data_samples'].gt_sem_seg.data.shape) == (1, 32, 32)


def test_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build(tmp_path)
    msg = str(err.value)
    assert osp.join(str(tmp_path), 'refs(unc).p') in msg
    assert osp.join(str(tmp_path), 'instances.json') in msg
    assert osp.join(str(tmp_path), 'images') in msg  # the image folder
    assert 'data/coco/train2014' in msg  # the public layout as an example
    make_refer(tmp_path)
    with pytest.raises(ValueError,
                       match="valid: \\['train', 'val', 'test'\\]"):
        build(tmp_path, split_by='umd', split='testA')
    with pytest.raises(ValueError, match='split_by.*valid.*google'):
        build(tmp_path, split_by='foo')
    with pytest.raises(ValueError, match="'testA', 'testB'"):
        build(tmp_path, split='test')  # unc has no plain 'test'
    with pytest.raises(ValueError, match='train_mode'):
        build(tmp_path, train_mode='epoch')
    (tmp_path / 'images' / 'a.png').unlink()
    with pytest.raises(FileNotFoundError, match='a.png'):
        build(tmp_path)
    (tmp_path / 'instances.json').unlink()
    with pytest.raises(FileNotFoundError, match='instances.json'):
        build(tmp_path)


def test_missing_annotation_and_empty_expression(tmp_path):
    make_refer(tmp_path, missing_ann=True)
    with pytest.raises(KeyError, match='ref_id 2'):
        build(tmp_path)
    make_refer(tmp_path, empty_sentence=True)
    with pytest.raises(ValueError, match='ref_id 2.*sent_id \\[4\\]'):
        build(tmp_path)
    ds = build(tmp_path, test_mode=True, skip_empty=True)
    assert sorted(ds[i]['data_samples'].sent_id for i in range(len(ds))) \
        == [0, 1, 2, 5]
    make_refer(tmp_path, no_sentences=True)
    with pytest.raises(ValueError, match='ref_id 1: no sentences'):
        build(tmp_path, split='val')


def test_python2_pickle_and_gray_rgba_images(tmp_path):
    make_refer(tmp_path, py2=True)
    raw = open(osp.join(tmp_path, 'refs(unc).p'), 'rb').read()
    assert pickle.SHORT_BINSTRING + bytes([len('ref_id')]) + b'ref_id' in raw
    ds = build(tmp_path, split='val', test_mode=True, pipeline=[])
    assert ds[0]['text'] == 'the cat' and ds[0]['ref_id'] == 1
    ds = build(tmp_path, split='val', test_mode=True, pipeline=TEST_PIPE)
    img = ds[0]['inputs']
    assert img.shape[0] == 3  # RGBA -> 3 channels
    # BGR order: the red channel (index 2 in BGR) carries the value 200
    assert int(img[2, 0, 0]) == 200 and int(img[0, 0, 0]) == 0
    gray = build(tmp_path, test_mode=True, pipeline=TEST_PIPE)[0]['inputs']
    assert gray.shape[0] == 3 and bool((gray[0] == gray[1]).all())
    assert int(gray[0, 0, 0]) == 128


def test_python2_pickle_non_ascii_text(tmp_path):
    from sera_mm.datasets.refer_dataset import ReferDataset as RD
    make_refer(tmp_path, py2=True)
    with pytest.raises(UnicodeDecodeError):  # what a plain load does
        pickle.load(open(osp.join(tmp_path, 'refs(unc).p'), 'rb'))
    ds = RD(data_root=str(tmp_path), split='val', test_mode=True,
            data_prefix=dict(img_path='images'), lazy_init=True)
    refs = ds._read_refs()
    assert refs[1]['sentences'][0]['raw'] == 'the caf\u00e9 cat'
    assert refs[0]['ref_id'] == 0


def test_metainfo(tmp_path):
    make_refer(tmp_path)
    ds = build(tmp_path)
    assert ds.metainfo['dataset_name'] == f'{tmp_path.name}_unc'
    assert ds.metainfo['classes'] == ('background', 'object')
    assert len(ds.metainfo['palette']) == 2
    named = build(tmp_path, dataset_name='refcoco_unc',
                  metainfo=dict(extra=1))
    assert named.metainfo['dataset_name'] == 'refcoco_unc'
    assert named.metainfo['extra'] == 1


@pytest.mark.parametrize('cfg_name', ['refcoco_unc.py', 'refcoco+_unc.py',
                                      'refcocog_umd.py', 'refcocog_google.py'])
def test_dataset_configs_build_and_batch(tmp_path, cfg_name):
    from mmengine.config import Config
    from mmengine.runner import Runner

    from sera_mm.datasets.refer_dataset import SPLITS
    from sera_mm.utils import register_all_modules
    register_all_modules()
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(
        osp.join(root, 'configs', '_base_', 'datasets', cfg_name))
    assert cfg.input_size == 416
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[name].dataset
        assert ds.split in SPLITS[ds.split_by], (name, ds.split)
        assert osp.normpath(osp.join(ds.data_root, ds.data_prefix.img_path)) \
            == osp.join('data', 'coco', 'train2014')
    assert cfg.train_dataloader.dataset.split == 'train'
    assert cfg.val_evaluator.type == 'ReferMetric'
    if cfg_name != 'refcoco_unc.py':
        return
    make_refer(tmp_path)
    loader_cfg = cfg.val_dataloader.copy()
    loader_cfg.update(num_workers=0, persistent_workers=False, batch_size=2)
    loader_cfg.dataset.update(data_root=str(tmp_path), split='train',
                              data_prefix=dict(img_path='images'))
    batch = next(iter(Runner.build_dataloader(loader_cfg)))
    assert len(batch['inputs']) == 2
    assert all(tuple(x.shape) == (3, 416, 416) for x in batch['inputs'])
    sample = batch['data_samples'][0]
    assert tuple(sample.gt_sem_seg.data.shape[-2:]) == sample.ori_shape


def test_synthetic_dataset_generates_once(tmp_path, monkeypatch):
    calls = []

    def fake_generate(out_dir, **kwargs):
        calls.append(kwargs)
        make_refer(out_dir)
        # the fixture uses split_by unc; expose it under the synthetic name
        import shutil
        shutil.copy(osp.join(out_dir, 'refs(unc).p'),
                    osp.join(out_dir, 'refs(synthetic).p'))
        open(osp.join(out_dir, '.done'), 'w').close()

    import sera_mm.datasets.synthetic as synth
    monkeypatch.setattr(synth, 'generate_synthetic_refer', fake_generate)
    monkeypatch.setattr(
        synth, 'is_synthetic_refer_complete',
        lambda d: osp.isfile(osp.join(d, '.done')))
    root = str(tmp_path / 'syn')
    for _ in range(2):
        ds = SyntheticReferDataset(data_root=root, split='train',
                                   generate=dict(num_images=3, seed=1),
                                   pipeline=[])
        assert len(ds) == 2
    assert len(calls) == 1 and calls[0]['num_images'] == 3
    assert ds.metainfo['dataset_name'] == 'synthetic'
    assert ds.split_by == 'synthetic'
    with pytest.raises(FileNotFoundError, match=r'refs\(synthetic\)\.p'):
        SyntheticReferDataset(data_root=str(tmp_path / 'none'), split='val')


def test_synthetic_dataset_with_real_generator(tmp_path):
    """A tiny benchmark from the real generator reads back with typed
    expressions on every split."""
    pipe = [dict(type='LoadReferImage'), dict(type='Letterbox', size=32),
            dict(type='LoadReferMask'), dict(type='PackReferInputs')]
    gen = dict(num_images=20, seed=0, image_size=48, progress=False)
    types = {'attribute', 'spatial', 'relational', 'ordinal', 'boundary'}
    for split in ('train', 'val', 'testA', 'testB'):
        ds = SyntheticReferDataset(data_root=str(tmp_path), split=split,
                                   generate=gen, test_mode=True,
                                   pipeline=pipe)
        sample = ds[0]['data_samples']
        assert sample.expr_type in types and sample.text
        assert tuple(sample.gt_sem_seg.data.shape) == (1, 48, 48)
        assert int(sample.gt_sem_seg.data.sum()) > 0
    assert synthetic_dataset.ReferDataset is ReferDataset
