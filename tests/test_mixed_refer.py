"""Training on RefCOCO + RefCOCO+ + RefCOCOg at once without evaluation
images (MixedReferDataset), evaluating several splits in one run
(ConcatReferDataset + PerSetMetric) and the leakage report
(tools/dataset_converters/check_leakage.py), on fixtures with known
overlaps (tests/refer_fixtures.py)."""
import importlib.util
import json
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch

from mmengine.config import Config

from refer_fixtures import REFS, make_coco_mixture, write_refer
from sera_mm.datasets import (ConcatReferDataset, MixedReferDataset,
                              ReferDataset)
from sera_mm.datasets import mixed_dataset
from sera_mm.datasets.leakage import normalise_sentence
from sera_mm.evaluation import PerSetMetric
from sera_mm.evaluation import per_set_metric

REPO = Path(__file__).resolve().parents[1]
MIXED_CFG = REPO / 'configs' / '_base_' / 'datasets' / 'refcoco_mixed.py'


def _tool():
    path = REPO / 'tools' / 'dataset_converters' / 'check_leakage.py'
    spec = importlib.util.spec_from_file_location('check_leakage_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cfg(data, folder, split, **kw):
    split_by = REFS[folder][0]
    return dict(type='ReferDataset', data_root=osp.join(data, folder),
                split_by=split_by, split=split,
                data_prefix=dict(img_path='../coco/train2014'), **kw)


def _train_cfgs(data):
    return [_cfg(data, f, 'train') for f in ('refcoco', 'refcoco+',
                                             'refcocog')]


def _eval_cfgs(data):
    return [_cfg(data, 'refcoco', s) for s in ('val', 'testA', 'testB')] + \
        [_cfg(data, 'refcoco+', s) for s in ('val', 'testA', 'testB')] + \
        [_cfg(data, 'refcocog', s) for s in ('val', 'test')]


@pytest.fixture
def logs(monkeypatch):
    lines = []
    monkeypatch.setattr(mixed_dataset, 'print_log',
                        lambda msg, **kw: lines.append(str(msg)))
    return lines


EXPECTED = {
    # (removed, total) images / refs / expressions; images shared per split
    'refcoco_unc/train': dict(
        images=(2, 3), refs=(2, 3), expressions=(4, 6),
        shared={'refcoco+_unc/val': 1, 'refcoco+_unc/testB': 1}),
    'refcoco+_unc/train': dict(
        images=(2, 3), refs=(2, 3), expressions=(3, 4),
        shared={'refcoco_unc/testA': 1, 'refcocog_umd/val': 1}),
    'refcocog_umd/train': dict(
        images=(3, 4), refs=(4, 5), expressions=(6, 8),
        shared={'refcoco_unc/val': 1, 'refcoco_unc/testB': 1,
                'refcoco+_unc/testA': 1}),
}


def _report(ds):
    return {name: dict(images=r['images'], refs=r['refs'],
                       expressions=r['expressions'], shared=dict(r['shared']))
            for name, r in ds.exclusion_report.items()}


@pytest.mark.parametrize('explicit', [False, True])
def test_mixture_drops_every_evaluation_image(tmp_path, logs, explicit):
    data = make_coco_mixture(str(tmp_path))
    ds = MixedReferDataset(
        datasets=_train_cfgs(data),
        exclude=_eval_cfgs(data) if explicit else None, pipeline=[])
    # one ref left per dataset: image 1 (twice) and image 9
    assert len(ds) == 3
    items = [ds.get_data_info(i) for i in range(len(ds))]
    assert sorted(it['image_id'] for it in items) == [1, 1, 9]
    assert _report(ds) == EXPECTED
    # the RefCOCO val image 4 is a RefCOCOg training image: gone
    refcocog = ds.datasets[2]
    assert all(refcocog.get_data_info(i)['image_id'] != 4
               for i in range(len(refcocog)))
    text = '\n'.join(logs)
    assert ('refcocog_umd/train loses 3 of 4 images, 4 of 5 refs and 6 of 8 '
            'expressions') in text
    assert 'refcoco_unc/val: 1' in text
    assert '7 refs' not in text and '8 refs and 13 expressions removed' in \
        text
    assert ds.metainfo['dataset_name'] == \
        'refcoco_unc+refcoco+_unc+refcocog_umd'
    assert ds.metainfo['mixture'] == list(EXPECTED)


def test_mixture_sentence_mode_counts_expressions(tmp_path, logs):
    data = make_coco_mixture(str(tmp_path))
    cfgs = [dict(c, train_mode='sentence') for c in _train_cfgs(data)]
    ds = MixedReferDataset(datasets=cfgs, pipeline=[])
    assert len(ds) == 2 + 1 + 2  # expressions on images 1, 1, 9
    assert _report(ds) == EXPECTED


def test_exclusion_only_of_the_splits_given(tmp_path, logs):
    """Excluding only RefCOCO val (the image shared with RefCOCOg train)."""
    data = make_coco_mixture(str(tmp_path))
    ds = MixedReferDataset(
        datasets=[_cfg(data, 'refcocog', 'train')],
        exclude=[dict(data_root=osp.join(data, 'refcoco'), split_by='unc',
                      splits=['val'])], pipeline=[])
    assert ds.exclusion_report['refcocog_umd/train']['images'] == (1, 4)
    assert ds.exclusion_report['refcocog_umd/train']['refs'] == (2, 5)
    assert dict(ds.exclusion_report['refcocog_umd/train']['shared']) == \
        {'refcoco_unc/val': 1}
    assert sorted(ds.get_data_info(i)['image_id']
                  for i in range(len(ds))) == [6, 8, 9]


def test_match_by_file_name_and_json_refs(tmp_path, logs):
    """Datasets with their own image ids are matched by file name; the
    evaluation set here has refs in JSON (refs(unc).json)."""
    data = make_coco_mixture(str(tmp_path))
    own = osp.join(data, 'own')
    # RefCOCO val's image 4 under another id (id 4 + 1000 would not match)
    write_refer(own, 'unc', [dict(ref_id=0, image_id=4, ann_id=40,
                                  split='val', sentences=['x'])],
                refs_format='json')
    ds = MixedReferDataset(
        datasets=[_cfg(data, 'refcocog', 'train')],
        exclude=[dict(data_root=own, split_by='unc', split='val')],
        match_by='file_name', pipeline=[])
    assert ds.exclusion_report['refcocog_umd/train']['images'] == (1, 4)
    with pytest.raises(ValueError, match='match_by'):
        MixedReferDataset(datasets=[_cfg(data, 'refcocog', 'train')],
                          match_by='name')


def test_nothing_left_and_missing_files_are_named(tmp_path, logs):
    data = make_coco_mixture(str(tmp_path))
    with pytest.raises(ValueError, match='every one of its 4 images is '
                       'excluded'):
        MixedReferDataset(
            datasets=[_cfg(data, 'refcocog', 'train')],
            exclude=[_cfg(data, 'refcocog', 'train')], pipeline=[])
    with pytest.raises(FileNotFoundError, match=r'nowhere.refs\(unc\)\.p'):
        MixedReferDataset(
            datasets=[_cfg(data, 'refcocog', 'train')],
            exclude=[dict(data_root=str(tmp_path / 'nowhere'),
                          split_by='unc', split='val')], pipeline=[])


def _args(data, folder, split):
    args = _cfg(data, folder, split)
    args.pop('type')
    return args


def test_refer_dataset_exclusion_stats(tmp_path):
    data = make_coco_mixture(str(tmp_path))
    ds = ReferDataset(**_args(data, 'refcocog', 'train'), pipeline=[],
                      exclude_images=[4, 8])
    assert ds.exclusion_stats['images'] == (2, 4)
    assert ds.exclusion_stats['refs'] == (3, 5)
    assert ds.exclusion_stats['expressions'] == (5, 8)
    assert ds.exclusion_stats['removed_images'] == {4, 8}
    plain = ReferDataset(**_args(data, 'refcocog', 'train'), pipeline=[])
    assert plain.exclusion_stats is None and len(plain) == 5
    # the annotation's box travels with the item
    assert plain.get_data_info(0)['bbox'] == [0.0, 1.0, 5.0, 4.0]


def test_concat_dataset_tags_each_split(tmp_path):
    data = make_coco_mixture(str(tmp_path))
    pipe = [dict(type='LoadReferImage'), dict(type='Letterbox', size=16),
            dict(type='LoadReferMask'), dict(type='PackReferInputs')]
    ds = ConcatReferDataset(
        datasets=[_cfg(data, 'refcoco', 'val'),
                  dict(_cfg(data, 'refcocog', 'test'), name='g/test')],
        pipeline=pipe)
    assert len(ds) == 2
    assert ds.metainfo['eval_sets'] == ['refcoco_unc/val', 'g/test']
    assert ds[0]['data_samples'].eval_set == 'refcoco_unc/val'
    assert ds[0]['data_samples'].bbox == [0.0, 1.0, 5.0, 4.0]
    assert ds[1]['data_samples'].eval_set == 'g/test'
    assert ds[1]['data_samples'].text == 'house'
    with pytest.raises(ValueError, match='two splits are named'):
        ConcatReferDataset(datasets=[_cfg(data, 'refcoco', 'val')] * 2)
    with pytest.raises(ValueError, match='does not apply'):
        ConcatReferDataset(datasets=[_cfg(data, 'refcoco', 'val')],
                           split='testA')


def _sample(eval_set, gt, pred, sent_id=0):
    return dict(eval_set=eval_set, sent_id=sent_id, ref_id=sent_id,
                gt_sem_seg=dict(data=torch.as_tensor(gt)[None]),
                pred_sem_seg=dict(data=torch.as_tensor(pred)[None]))


def test_per_set_metric_one_table_per_dataset(monkeypatch):
    lines = []
    monkeypatch.setattr(per_set_metric, 'print_log',
                        lambda msg, **kw: lines.append(str(msg)))
    gt = np.zeros((4, 4), np.int64)
    gt[:2, :2] = 1  # 4 px
    half = np.zeros_like(gt)
    half[:1, :2] = 1  # 2 px inside: IoU 0.5
    metric = PerSetMetric(metric=dict(type='ReferMetric'),
                          mean_keys=('mIoU', 'oIoU'))
    metric.dataset_meta = dict(eval_sets=['a/val', 'a/test', 'b/val'])
    metric.process(None, [_sample('b/val', gt, np.zeros_like(gt)),
                          _sample('a/test', gt, half),
                          _sample('a/val', gt, gt)])
    out = metric.evaluate(3)
    assert out['a/val/mIoU'] == pytest.approx(100.0)
    assert out['a/test/mIoU'] == pytest.approx(50.0)
    assert out['a/test/Prec@0.5'] == 0.0  # strict >
    assert out['b/val/mIoU'] == 0.0
    assert out['a/val/count'] == 1
    assert out['mean/mIoU'] == pytest.approx(50.0)
    assert out['mean/oIoU'] == pytest.approx(50.0)
    tables = lines[-1].lstrip('\n')
    assert tables.startswith('a:\n| split | mIoU | oIoU | Prec@0.5')
    assert '| val | 100.00 |' in tables and '| test | 50.00 |' in tables
    assert '\n\nb:\n' in tables
    with pytest.raises(ValueError, match='same key|two wrapped'):
        m = PerSetMetric(metric=[dict(type='ReferMetric')] * 2)
        m.process(None, [_sample('a', gt, gt)])
        m.evaluate(1)


def test_normalised_sentences():
    assert normalise_sentence('The  man, LEFT!') == 'the man left'
    assert normalise_sentence('caf\u00e9-2') == 'caf 2'


def test_check_leakage_reports_known_overlaps(tmp_path, capsys):
    data = make_coco_mixture(str(tmp_path))
    tool = _tool()
    out = tmp_path / 'leak.json'
    status = tool.main([
        '--train', f'{data}/refcoco:unc:train', f'{data}/refcocog:umd:train',
        '--eval', f'{data}/refcoco:unc:val,testA,testB',
        f'{data}/refcoco+:unc:val,testA,testB', f'{data}/refcocog:umd:val,'
        'test', '--json', str(out), '--fail-on-leak'])
    assert status == 1
    report = json.loads(out.read_text())
    pairs = {(p['train'], p['eval']): p for p in report['pairs']}
    assert len(pairs) == 2 * 8
    p = pairs[('refcocog_umd/train', 'refcoco_unc/val')]
    assert (p['images'], p['refs'], p['expressions'], p['identical']) == \
        (1, 2, 3, 1)
    assert p['example_images'] == [4]
    assert p['example_identical'][0]['sentence'] == 'The man, left'
    assert p['object_key'] == 'ann_id'
    p = pairs[('refcocog_umd/train', 'refcoco+_unc/testA')]
    assert (p['images'], p['refs'], p['expressions'], p['identical']) == \
        (1, 1, 2, 1)
    p = pairs[('refcoco_unc/train', 'refcoco+_unc/val')]
    assert (p['images'], p['identical']) == (1, 0)  # 'red car' vs 'car'
    assert pairs[('refcoco_unc/train', 'refcoco_unc/val')]['images'] == 0
    assert report['train']['refcocog_umd/train'] == dict(images=4,
                                                         shared_images=3)
    printed = capsys.readouterr().out
    assert '| refcocog_umd/train | refcoco_unc/val | 1 | 2 | 3 | 1 |' in \
        printed
    assert 'LEAK' in printed
    # no overlap: status 0 even with --fail-on-leak
    assert tool.main(['--train', f'{data}/refcoco:unc:train', '--eval',
                      f'{data}/refcoco:unc:val', '--fail-on-leak']) == 0


def test_check_leakage_reads_a_config_and_rejects_bad_specs(
        tmp_path, monkeypatch, capsys):
    make_coco_mixture(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the config's data/... paths
    tool = _tool()
    assert tool.main(['--config', str(MIXED_CFG), '--json', 'r.json']) == 0
    report = json.loads((tmp_path / 'r.json').read_text())
    assert len(report['train']) == 3
    assert report['train']['refcocog_umd/train']['shared_images'] == 3
    with pytest.raises(ValueError, match='DATA_ROOT:SPLIT_BY:SPLIT'):
        tool.parse_spec('data/refcoco')
    with pytest.raises(SystemExit) as err:
        tool.main(['--help'])
    assert err.value.code == 0
    assert 'cris:DATA_ROOT' in capsys.readouterr().out


def test_mixed_config_validates_and_tests_in_one_run(tmp_path, monkeypatch):
    """The mixed dataset config under mmengine's Runner with the tiny model:
    MixedReferDataset as the training set, the three val splits in one
    validation run and all eight splits in one test run, with mask and box
    keys per dataset and split."""
    from mmengine.runner import Runner
    from sera_mm.utils import register_all_modules
    register_all_modules()
    make_coco_mixture(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    data_cfg = Config.fromfile(str(MIXED_CFG))
    cfg = Config.fromfile(str(REPO / 'configs' / 'sera' /
                              'sera_tiny_synthetic.py'))
    loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader = dict(data_cfg.train_dataloader, **loader)
    cfg.train_dataloader.dataset.pipeline = cfg.train_pipeline
    for key in ('val_dataloader', 'test_dataloader'):
        cfg[key] = dict(data_cfg[key], **loader)
        cfg[key].dataset.pipeline = cfg.test_pipeline
    cfg.val_evaluator = data_cfg.val_evaluator
    cfg.test_evaluator = data_cfg.test_evaluator
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = 'mixed_test_run'
    cfg.visualizer.name = 'mixed_test_run'
    train = Runner.build_dataloader(cfg.train_dataloader)
    assert isinstance(train.dataset, MixedReferDataset)
    assert len(train.dataset) == 3
    batch = next(iter(train))
    assert tuple(batch['inputs'][0].shape) == (3, 64, 64)
    runner = Runner.from_cfg(cfg)
    val = runner.val()
    assert sorted(k for k in val if k.endswith('/count')) == [
        'refcoco+_unc/val/count', 'refcoco_unc/val/count',
        'refcocog_umd/val/count']
    metrics = runner.test()
    sets = ['refcoco_unc/val', 'refcoco+_unc/val', 'refcocog_umd/val',
            'refcoco_unc/testA', 'refcoco_unc/testB', 'refcoco+_unc/testA',
            'refcoco+_unc/testB', 'refcocog_umd/test']
    for name in sets:
        assert f'{name}/mIoU' in metrics and metrics[f'{name}/count'] == 1
        assert f'{name}/BoxAcc@0.5' in metrics
    assert {'mean/mIoU', 'mean/oIoU', 'mean/BoxAcc@0.5'} <= set(metrics)


def test_per_set_metric_writes_one_output_file_per_split(tmp_path):
    gt = np.zeros((4, 4), np.int64)
    gt[:2, :2] = 1
    out = tmp_path / 'iou.csv'
    metric = PerSetMetric(metric=dict(type='ReferMetric',
                                      output_file=str(out)))
    metric.process(None, [_sample('refcoco_unc/val', gt, gt, 7),
                          _sample('refcoco+_unc/testA', gt, gt, 8)])
    metric.evaluate(2)
    val = tmp_path / 'iou_refcoco_unc_val.csv'
    test_a = tmp_path / 'iou_refcoco+_unc_testA.csv'
    assert val.is_file() and test_a.is_file() and not out.exists()
    assert val.read_text().splitlines()[1].startswith('7,7,')
    assert test_a.read_text().splitlines()[1].startswith('8,8,')
    assert metric.metrics[0].output_file == str(out)  # restored
