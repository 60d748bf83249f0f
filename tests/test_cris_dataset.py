"""Data prepared by CRIS's tools/data_process.py (anns/<dataset>/<split>.json
and masks/<dataset>/<segment_id>.png, as ETRIS and DETRIS reuse it) read
as CRISReferDataset, on a fixture written in that format."""
import importlib.util
import json
import os
import os.path as osp
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from refer_fixtures import REFS, make_coco_mixture, write_cris
from sera_mm.datasets import CRISReferDataset, MixedReferDataset
from sera_mm.datasets.cris_dataset import (COCO_CATEGORY_IDS,
                                           cris_category_id, cris_image_id)

REPO = Path(__file__).resolve().parents[1]
PIPE = [dict(type='LoadReferImage'), dict(type='Letterbox', size=16),
        dict(type='LoadReferMask'), dict(type='PackReferInputs')]


def _cris_root(tmp_path):
    """RefCOCO's fixture refs in CRIS's layout (all four splits)."""
    root = str(tmp_path / 'datasets')
    refs = REFS['refcoco'][1]
    for split in ('train', 'val', 'testA', 'testB'):
        write_cris(root, 'refcoco', split,
                   [r for r in refs if r['split'] == split])
    return root


def test_items_masks_and_ids(tmp_path):
    root = _cris_root(tmp_path)
    ds = CRISReferDataset(data_root=root, dataset='refcoco', split='train',
                          pipeline=[])
    assert len(ds) == 3  # refs
    assert ds.metainfo['dataset_name'] == 'refcoco_unc'
    assert ds.split_by == 'unc'
    info = ds.get_data_info(2)
    assert info['ref_id'] == 2 and info['ann_id'] is None
    assert info['image_id'] == 3  # from COCO_train2014_000000000003.png
    assert info['category_id'] == 1  # cat 0 -> COCO id 1
    # CRIS's [x1, y1, x2, y2] back as [x, y, w, h]: ann 30 -> x0 = 6
    assert info['bbox'] == [6.0, 7.0, 5.0, 4.0]
    assert info['text'] in ('dog', 'small dog', 'brown dog')
    assert info['mask_path'] == osp.join(root, 'masks', 'refcoco', '2.png')
    assert (info['height'], info['width']) == (16, 16)
    assert ds.get_data_info(0)['img_path'] == osp.join(
        root, 'images', 'train2014', 'COCO_train2014_000000000001.png')
    sentences = CRISReferDataset(data_root=root, dataset='refcoco',
                                 split='train', train_mode='sentence',
                                 pipeline=[])
    assert len(sentences) == 6
    test = CRISReferDataset(data_root=root, dataset='refcoco', split='val',
                            test_mode=True, pipeline=PIPE)
    assert len(test) == 1
    sample = test[0]['data_samples']
    assert sample.text == 'The man, LEFT!' and sample.ref_id == 3
    assert sample.image_id == 4 and sample.bbox == [0.0, 1.0, 5.0, 4.0]
    gt = sample.gt_sem_seg.data[0].numpy()
    png = cv2.imread(osp.join(root, 'masks', 'refcoco', '3.png'), 0) > 0
    assert np.array_equal(gt > 0, png) and int(gt.sum()) == 20


def test_helpers():
    assert cris_image_id('COCO_train2014_000000581857.jpg') == 581857
    assert cris_image_id('dir/COCO_train2014_000000000012.jpg') == 12
    assert cris_image_id('my_photo_12.jpg') == 'my_photo_12.jpg'
    assert len(COCO_CATEGORY_IDS) == 80
    assert [cris_category_id(c) for c in (0, 11, 79, 80)] == [1, 13, 90, 80]


def test_errors_name_the_input(tmp_path):
    root = _cris_root(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        CRISReferDataset(data_root=root, dataset='refcocog_u', split='val',
                         pipeline=[])
    msg = str(err.value)
    assert osp.join(root, 'anns', 'refcocog_u', 'val.json') in msg
    assert 'datasets/masks/refcoco/<segment_id>.png' in msg  # the layout
    with pytest.raises(ValueError, match="unknown 'testA' for CRIS dataset "
                       "'refcocog_u'"):
        CRISReferDataset(data_root=root, dataset='refcocog_u', split='testA')
    os.remove(osp.join(root, 'masks', 'refcoco', '4.png'))
    with pytest.raises(FileNotFoundError, match=r'mask of .*testA\.json\[0\] '
                       r'\(segment_id 4\) not found'):
        CRISReferDataset(data_root=root, dataset='refcoco', split='testA')
    unchecked = CRISReferDataset(data_root=root, dataset='refcoco',
                                 split='testA', check_masks=False,
                                 pipeline=[])
    with pytest.raises(FileNotFoundError, match=r'ref_id 4: mask .*4\.png '
                       'is missing'):
        unchecked.get_data_info(0)
    path = osp.join(root, 'anns', 'refcoco', 'testB.json')
    entries = json.load(open(path))
    del entries[0]['img_name']
    json.dump(entries, open(path, 'w'))
    with pytest.raises(ValueError, match=r'testB\.json\[0\]: no "img_name"; '
                       'expected the keys bbox, cat, segment_id'):
        CRISReferDataset(data_root=root, dataset='refcoco', split='testB')
    entries[0]['img_name'] = 'COCO_train2014_000000000006.png'
    entries[0]['bbox'] = [5, 5, 1, 1]
    json.dump(entries, open(path, 'w'))
    with pytest.raises(ValueError, match=r'"bbox" \[5, 5, 1, 1\]; expected '
                       r'\[x1, y1, x2, y2\]'):
        CRISReferDataset(data_root=root, dataset='refcoco', split='testB')
    json.dump({'not': 'a list'}, open(path, 'w'))
    with pytest.raises(ValueError, match='expected a JSON list of refs'):
        CRISReferDataset(data_root=root, dataset='refcoco', split='testB')
    with pytest.raises(TypeError, match="'split_by' is not an argument"):
        CRISReferDataset(data_root=root, split_by='unc')


def test_mask_of_another_size_than_the_image(tmp_path):
    root = _cris_root(tmp_path)
    cv2.imwrite(osp.join(root, 'masks', 'refcoco', '3.png'),
                np.full((8, 8), 255, np.uint8))
    ds = CRISReferDataset(data_root=root, dataset='refcoco', split='val',
                          test_mode=True, pipeline=PIPE)
    with pytest.raises(ValueError, match=r'ref_id 3: the annotation is '
                       r'\(8, 8\).*is \(16, 16\)'):
        ds[0]


def test_cris_training_set_in_a_mixture_with_refer_evaluation(tmp_path):
    """RefCOCOg's training set prepared by CRIS, RefCOCO's val in the REFER
    layout: image 4 (COCO id from the file name) is excluded."""
    data = make_coco_mixture(str(tmp_path))
    root = str(tmp_path / 'datasets')
    write_cris(root, 'refcocog_u', 'train',
               [r for r in REFS['refcocog'][1] if r['split'] == 'train'])
    ds = MixedReferDataset(
        datasets=[dict(type='CRISReferDataset', data_root=root,
                       dataset='refcocog_u', split='train')],
        exclude=[dict(data_root=osp.join(data, 'refcoco'), split_by='unc',
                      splits=['val', 'testA', 'testB'])], pipeline=[])
    report = ds.exclusion_report['refcocog_umd/train']
    assert report['images'] == (2, 4)  # images 4 (val) and 6 (testB)
    assert report['refs'] == (3, 5)
    assert dict(report['shared']) == {'refcoco_unc/val': 1,
                                      'refcoco_unc/testB': 1}
    # default exclusion: the CRIS partition's other splits (none written)
    alone = MixedReferDataset(
        datasets=[dict(type='CRISReferDataset', data_root=root,
                       dataset='refcocog_u', split='train')], pipeline=[])
    assert len(alone) == 5


def test_check_leakage_compares_cris_and_refer_by_box(tmp_path):
    data = make_coco_mixture(str(tmp_path))
    root = str(tmp_path / 'datasets')
    write_cris(root, 'refcocog_u', 'train',
               [r for r in REFS['refcocog'][1] if r['split'] == 'train'])
    path = REPO / 'tools' / 'dataset_converters' / 'check_leakage.py'
    spec = importlib.util.spec_from_file_location('leak_tool_cris', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    report = tool.check([tool.parse_spec(f'cris:{root}:refcocog_u:train')],
                        [tool.parse_spec(f'{data}/refcoco:unc:val')])
    (pair, ) = report['pairs']
    assert pair['train'] == 'refcocog_umd/train'
    assert (pair['images'], pair['refs'], pair['expressions'],
            pair['identical'], pair['object_key']) == (1, 2, 3, 1, 'box')


def test_cris_dataset_config_builds_a_batch(tmp_path, monkeypatch):
    from mmengine.runner import Runner
    from sera_mm.utils import register_all_modules
    register_all_modules()
    _cris_root(tmp_path)
    monkeypatch.chdir(tmp_path)  # the config's datasets/ folder
    cfg = Config.fromfile(str(REPO / 'configs' / '_base_' / 'datasets' /
                              'refcoco_cris.py'))
    assert cfg.test_dataloader.dataset.split == 'testA'
    for key in ('train_dataloader', 'test_dataloader'):
        loader_cfg = cfg[key].copy()
        loader_cfg.update(num_workers=0, persistent_workers=False,
                          batch_size=1)
        batch = next(iter(Runner.build_dataloader(loader_cfg)))
        sample = batch['data_samples'][0]
        assert tuple(batch['inputs'][0].shape) == (3, 416, 416)
        assert sample.image_id in (1, 2, 3, 5)
