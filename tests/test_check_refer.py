"""tools/dataset_converters/check_refer.py: counts per split against the
published ones, missing images and undecodable masks named by id."""
import importlib.util
import json
import os
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _tool():
    path = osp.join(ROOT, 'tools', 'dataset_converters', 'check_refer.py')
    spec = importlib.util.spec_from_file_location('check_refer_tool', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_fixture(root):
    """RefCOCO-style layout: data/refcoco/{refs(unc).p, instances.json},
    images in data/coco/train2014. 5 images; refs per split: train 3 (on 2
    images, 5 sentences), val 1 (2), testA 1 (1), testB 1 (3)."""
    data = osp.join(root, 'refcoco')
    imgs = osp.join(root, 'coco', 'train2014')
    os.makedirs(data)
    os.makedirs(imgs)
    images, anns, refs = [], [], []
    plan = [('train', 1, 2), ('train', 1, 1), ('train', 2, 2),
            ('val', 3, 2), ('testA', 4, 1), ('testB', 5, 3)]
    for image_id in range(1, 6):
        name = f'COCO_train2014_{image_id:012d}.jpg'
        cv2.imwrite(osp.join(imgs, name), np.zeros((20, 30, 3), np.uint8))
        images.append(dict(id=image_id, file_name=name, height=20,
                           width=30))
    sent_id = 0
    for ref_id, (split, image_id, n) in enumerate(plan):
        ann_id = 100 + ref_id
        anns.append(dict(id=ann_id, image_id=image_id, category_id=1,
                         segmentation=[[2, 2, 12, 2, 12, 10, 2, 10]],
                         area=80, bbox=[2, 2, 10, 8], iscrowd=0))
        sents = []
        for _ in range(n):
            sents.append(dict(sent_id=sent_id, sent=f'object {sent_id}',
                              raw=f'object {sent_id}', tokens=[]))
            sent_id += 1
        refs.append(dict(ref_id=ref_id, ann_id=ann_id, image_id=image_id,
                         split=split, sentences=sents, category_id=1,
                         file_name=images[image_id - 1]['file_name']))
    with open(osp.join(data, 'refs(unc).p'), 'wb') as f:
        pickle.dump(refs, f)
    with open(osp.join(data, 'instances.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='thing')]), f)
    return data, imgs, anns


EXPECTED = {
    'train': dict(images=2, refs=3, expressions=5),
    'val': dict(images=1, refs=1, expressions=2),
    'testA': dict(images=1, refs=1, expressions=1),
    'testB': dict(images=1, refs=1, expressions=3),
}


def test_counts_match_and_report_ok(tmp_path, monkeypatch, capsys):
    tool = _tool()
    data, _, _ = _write_fixture(str(tmp_path))
    monkeypatch.setitem(tool.PUBLISHED, 'refcoco_unc', EXPECTED)
    out = str(tmp_path / 'report.json')
    assert tool.main([data, '--dataset', 'refcoco', '--split-by', 'unc',
                      '--out', out]) == 0
    text = capsys.readouterr().out
    assert 'OK: matches the published counts' in text
    with open(out) as f:
        report = json.load(f)
    for split, counts in EXPECTED.items():
        for key, value in counts.items():
            assert report['splits'][split][key] == value
        assert report['splits'][split]['masks_checked'] == \
            counts['refs']


def test_differences_missing_images_and_bad_masks_are_named(
        tmp_path, monkeypatch, capsys):
    tool = _tool()
    data, imgs, anns = _write_fixture(str(tmp_path))
    expected = {k: dict(v) for k, v in EXPECTED.items()}
    expected['train']['expressions'] = 6  # one more than the files hold
    monkeypatch.setitem(tool.PUBLISHED, 'refcoco_unc', expected)
    os.remove(osp.join(imgs, 'COCO_train2014_000000000003.jpg'))  # val
    anns[5]['segmentation'] = dict(size=[20, 30], counts='!!garbage')
    with open(osp.join(data, 'instances.json')) as f:
        coco = json.load(f)
    coco['annotations'] = anns
    with open(osp.join(data, 'instances.json'), 'w') as f:
        json.dump(coco, f)
    assert tool.main([data, '--split-by', 'unc']) == 1
    text = capsys.readouterr().out
    assert '5 (published 6)' in text
    assert 'missing image' in text and 'image_id 3' in text
    assert 'mask of ref_id 5 (ann_id 105, image_id 5)' in text
    assert 'NOT OK' in text


def test_check_refer_errors(tmp_path, capsys):
    tool = _tool()
    assert tool.main([str(tmp_path), '--split-by', 'unc']) == 2
    assert 'refs file not found' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path), '--dataset', 'cocoref'])
    data, _, _ = _write_fixture(str(tmp_path / 'x'))
    assert tool.main([data, '--masks', 'some']) == 2
