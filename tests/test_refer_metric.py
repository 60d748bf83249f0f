"""ReferMetric: hand-computed values on 4x4 masks, strict thresholds,
per-type breakdown, errors, output files and rank merging."""
import csv
import json
import logging
import os.path as osp
from unittest import mock

import numpy as np
import pytest
import torch

from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.evaluation import ReferMetric, sample_ious
from sera_mm.registry import METRICS

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _mask(rows=None, cols=None, pixels=None, value=1):
    m = torch.zeros(1, 4, 4, dtype=torch.uint8)
    if pixels is not None:
        for r, c in pixels:
            m[0, r, c] = value
    else:
        m[0, rows[0]:rows[1], cols[0]:cols[1]] = value
    return m


def _sample(pred, gt, sent_id, expr_type=None, ref_id=None, image_id=None):
    """What mmengine's Evaluator hands to ``process``: a plain dict."""
    sample = dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt),
                  sent_id=sent_id, ref_id=ref_id, expr_type=expr_type)
    if image_id is not None:
        sample['image_id'] = image_id
    return sample


def _hand_samples():
    """Four samples whose I, U are counted by hand.

    s0 attribute: GT rows 0-1 (8 px), pred rows 0-1 cols 0-1 (4 px):
        I=4, U=8, IoU=0.5 exactly.
    s1 attribute: GT = pred = rows 0-1 cols 0-1: I=4, U=4, IoU=1.
    s2 spatial: GT all 16 px, pred rows 0-2 (12 px, value 255):
        I=12, U=16, IoU=0.75.
    s3 spatial: GT pixel (0,0), pred pixel (3,3): I=0, U=2, IoU=0.
    """
    return [
        _sample(_mask((0, 2), (0, 2)), _mask((0, 2), (0, 4)), 10,
                'attribute', ref_id=1),
        _sample(_mask((0, 2), (0, 2)), _mask((0, 2), (0, 2)), 11,
                'attribute', ref_id=1),
        _sample(_mask((0, 3), (0, 4), value=255), _mask((0, 4), (0, 4)), 12,
                'spatial', ref_id=2),
        _sample(_mask(pixels=[(3, 3)]), _mask(pixels=[(0, 0)]), 13,
                'spatial', ref_id=3),
    ]


EXPECTED = {
    # IoUs 0.5, 1.0, 0.75, 0.0
    'mIoU': 56.25,
    'oIoU': 20 / 30 * 100,
    'Prec@0.5': 50.0,  # 0.5 itself is not > 0.5
    'Prec@0.6': 50.0,
    'Prec@0.7': 50.0,
    'Prec@0.8': 25.0,
    'Prec@0.9': 25.0,
    'attribute/mIoU': 75.0,
    'attribute/oIoU': 8 / 12 * 100,
    'attribute/Prec@0.5': 50.0,
    'attribute/Prec@0.6': 50.0,
    'attribute/Prec@0.7': 50.0,
    'attribute/Prec@0.8': 50.0,
    'attribute/Prec@0.9': 50.0,
    'attribute/count': 2,
    'spatial/mIoU': 37.5,
    'spatial/oIoU': 12 / 18 * 100,
    'spatial/Prec@0.5': 50.0,
    'spatial/Prec@0.6': 50.0,
    'spatial/Prec@0.7': 50.0,
    'spatial/Prec@0.8': 0.0,
    'spatial/Prec@0.9': 0.0,
    'spatial/count': 2,
    'count': 4,
}


def _assert_metrics(got, expected=EXPECTED):
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_hand_computed_values():
    metric = ReferMetric()
    metric.process({}, _hand_samples())
    assert [r[:3] for r in metric.results] == [
        (4, 8, 'attribute'), (4, 4, 'attribute'), (12, 16, 'spatial'),
        (0, 2, 'spatial')]
    _assert_metrics(metric.evaluate(4))
    assert metric.results == []  # evaluate resets


def test_registered_and_no_prefix():
    metric = METRICS.build(dict(type='ReferMetric'))
    assert isinstance(metric, ReferMetric)
    metric.process({}, _hand_samples())
    keys = metric.evaluate(4)
    assert 'mIoU' in keys and 'Prec@0.9' in keys
    assert not any(k.startswith('refer/') for k in keys)


def test_strict_threshold_boundary():
    # IoU exactly 0.5 and exactly 0.75 against thresholds 0.5 and 0.75.
    metric = ReferMetric(thresholds=(0.5, 0.75))
    metric.process({}, [_hand_samples()[0], _hand_samples()[2]])
    out = metric.evaluate(2)
    assert out['Prec@0.5'] == pytest.approx(50.0)  # only the 0.75 one
    assert out['Prec@0.75'] == pytest.approx(0.0)  # 0.75 is not > 0.75


def test_untyped_samples_only_overall():
    samples = _hand_samples()
    for s in samples:
        s['expr_type'] = None
    metric = ReferMetric()
    metric.process({}, samples)
    out = metric.evaluate(4)
    assert set(out) == {'mIoU', 'oIoU', *(f'Prec@{t}' for t in THRESHOLDS),
                        'count'}
    assert out['mIoU'] == pytest.approx(56.25)
    assert out['count'] == 4
    assert list(out)[0] == 'mIoU'  # what save_best='auto' picks


def test_seg_data_sample_input():
    samples = []
    for s in _hand_samples():
        ds = SegDataSample(metainfo=dict(sent_id=s['sent_id'],
                                         ref_id=s['ref_id'],
                                         expr_type=s['expr_type']))
        ds.pred_sem_seg = PixelData(data=s['pred_sem_seg']['data'])
        ds.gt_sem_seg = PixelData(data=s['gt_sem_seg']['data'])
        samples.append(ds)
    metric = ReferMetric()
    metric.process({}, samples)
    _assert_metrics(metric.evaluate(4))


def test_shape_mismatch_names_sample_and_shapes():
    bad = _sample(torch.zeros(1, 4, 4), torch.zeros(1, 5, 4), 'sent-77')
    metric = ReferMetric()
    with pytest.raises(ValueError) as err:
        metric.process({}, [bad])
    msg = str(err.value)
    assert 'sent-77' in msg and '(4, 4)' in msg and '(5, 4)' in msg


def test_missing_field_and_bad_rank():
    with pytest.raises(KeyError, match='gt_sem_seg'):
        ReferMetric().process({}, [dict(pred_sem_seg=dict(
            data=torch.zeros(1, 2, 2)), sent_id=1)])
    with pytest.raises(ValueError, match='pred_sem_seg'):
        ReferMetric().process({}, [_sample(torch.zeros(2, 2, 2, 2),
                                           torch.zeros(1, 2, 2), 1)])
    with pytest.raises(ValueError, match='thresholds'):
        ReferMetric(thresholds=(1.5, ))


def test_empty_union_counts_as_perfect():
    empty = _sample(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), 5, 'ordinal')
    miss = _sample(torch.zeros(1, 3, 3), torch.ones(1, 3, 3), 6, 'ordinal')
    metric = ReferMetric()
    metric.process({}, [empty, miss])
    out = metric.evaluate(2)
    assert out['mIoU'] == pytest.approx(50.0)  # (1 + 0) / 2
    assert out['oIoU'] == pytest.approx(0.0)  # 0 / (0 + 9)
    assert out['ordinal/count'] == 2
    np.testing.assert_allclose(sample_ious([0, 3, 0], [0, 4, 5]),
                               [1.0, 0.75, 0.0])


def test_empty_results_warn_and_zero():
    metric = ReferMetric()
    with mock.patch('sera_mm.evaluation.refer_metric.print_log') as log:
        out = metric.compute_metrics([])
    assert out == {'mIoU': 0.0, 'oIoU': 0.0,
                   **{f'Prec@{t}': 0.0 for t in THRESHOLDS}, 'count': 0}
    assert log.call_args.kwargs['level'] == logging.WARNING
    assert metric.evaluate(0) == out  # through BaseMetric as well


def test_table_logged():
    metric = ReferMetric()
    metric.process({}, _hand_samples())
    with mock.patch('sera_mm.evaluation.refer_metric.print_log') as log:
        metric.evaluate(4)
    table = log.call_args_list[0].args[0]
    lines = [ln for ln in table.strip().splitlines()]
    assert lines[0].startswith('| expr_type | count | mIoU | oIoU')
    assert lines[2].startswith('| all | 4 | 56.25 | 66.67 | 50.00')
    assert lines[3].startswith('| attribute | 2 | 75.00')
    assert lines[4].startswith('| spatial | 2 | 37.50')


def test_output_files(tmp_path):
    jsonl = tmp_path / 'out' / 'ious.jsonl'
    metric = ReferMetric(output_file=str(jsonl))
    metric.process({}, _hand_samples())
    out = metric.evaluate(4)
    lines = jsonl.read_text().strip().splitlines()
    assert len(lines) == 5
    first = json.loads(lines[0])
    assert first == dict(sent_id=10, ref_id=1, image_id=None,
                         expr_type='attribute', intersection=4, union=8,
                         iou=0.5)
    assert [json.loads(ln)['iou'] for ln in lines[:4]] == [0.5, 1.0, 0.75, 0]
    assert json.loads(lines[-1])['summary'] == pytest.approx(out)

    csv_path = tmp_path / 'ious.csv'
    metric = ReferMetric(output_file=str(csv_path))
    metric.process({}, _hand_samples())
    out = metric.evaluate(4)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [r['sent_id'] for r in rows] == ['10', '11', '12', '13']
    assert [float(r['iou']) for r in rows] == [0.5, 1.0, 0.75, 0.0]
    assert [r['ref_id'] for r in rows] == ['1', '1', '2', '3']
    summary = json.loads((tmp_path / 'ious_summary.json').read_text())
    assert summary == pytest.approx(out)
    # no temporary files left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'ious.csv', 'ious_summary.json', 'out']


def test_output_carries_the_image_of_each_expression(tmp_path):
    """The per-expression CSV names each expression's image (the cluster
    the paired comparisons' bootstrap resamples)."""
    gt = _mask((0, 2), (0, 2))
    samples = [_sample(gt, gt, sent_id=i, ref_id=i // 2, image_id=100 + i // 3)
               for i in range(4)]
    path = tmp_path / 'ious.csv'
    metric = ReferMetric(output_file=str(path))
    metric.process({}, samples)
    metric.evaluate(4)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r['image_id'] for r in rows] == ['100', '100', '100', '101']
    assert list(rows[0]) == ['sent_id', 'ref_id', 'image_id', 'expr_type',
                             'intersection', 'union', 'iou']


def _gather_like_mmengine(parts, size):
    """What ``mmengine.dist.collect_results_cpu`` does on rank 0: interleave
    the ranks' lists (DefaultSampler hands index i to rank i % world) and
    drop the padding beyond ``size``."""
    ordered = []
    for res in zip(*parts):
        ordered.extend(res)
    return ordered[:size]


def test_two_rank_merge_matches_single_process():
    samples = _hand_samples() + [
        _sample(_mask((1, 4), (1, 4)), _mask((0, 4), (1, 4)), 14, 'spatial')
    ]  # 5 samples: I=9, U=12
    size = len(samples)
    single = ReferMetric()
    single.process({}, samples)
    expected = single.compute_metrics(list(single.results))

    # DefaultSampler pads 5 -> 6 by repeating sample 0; rank r gets r::2.
    indices = list(range(size)) + [0]
    ranks = [ReferMetric(), ReferMetric()]
    for rank, metric in enumerate(ranks):
        for i in indices[rank::2]:
            metric.process({}, [samples[i]])
    assert len(ranks[0].results) == len(ranks[1].results) == 3
    merged = _gather_like_mmengine([m.results for m in ranks], size)
    assert merged == single.results
    got = ReferMetric().compute_metrics(merged)
    assert got == pytest.approx(expected)
    # Without the truncation the duplicate would change the numbers.
    padded = ReferMetric().compute_metrics(merged + [single.results[0]])
    assert padded['mIoU'] != pytest.approx(expected['mIoU'])


def test_padding_dropped_by_evaluate():
    samples = _hand_samples()
    metric = ReferMetric()
    metric.process({}, samples + [samples[3]])  # a padded duplicate
    _assert_metrics(metric.evaluate(len(samples)))


def test_results_are_picklable_plain_values():
    import pickle
    samples = _hand_samples()
    samples[0]['sent_id'] = torch.tensor(10)
    samples[1]['sent_id'] = np.int64(11)
    metric = ReferMetric()
    metric.process({}, samples)
    restored = pickle.loads(pickle.dumps(metric.results))
    assert restored == metric.results
    assert all(type(r[0]) is int and type(r[1]) is int for r in restored)
    assert [r[3] for r in restored] == [10, 11, 12, 13]
    assert type(restored[0][3]) is int and type(restored[1][3]) is int


def test_through_mmengine_evaluator():
    """The Evaluator turns SegDataSamples into dicts before ``process``."""
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator(ReferMetric())
    samples = []
    for s in _hand_samples():
        ds = SegDataSample(metainfo=dict(sent_id=s['sent_id'],
                                         expr_type=s['expr_type']))
        ds.pred_sem_seg = PixelData(data=s['pred_sem_seg']['data'])
        ds.gt_sem_seg = PixelData(data=s['gt_sem_seg']['data'])
        samples.append(ds)
    evaluator.process(samples[:3], {})
    evaluator.process(samples[3:], {})
    _assert_metrics(evaluator.evaluate(4))


def _dist_worker(rank, port, out_dir):
    """One rank of a real 2-process gloo evaluation (DefaultSampler-like
    interleaved split with the last slot padded by sample 0)."""
    import os
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    try:
        samples = _five_samples()
        indices = (list(range(len(samples))) + [0])[rank::2]
        metric = ReferMetric()
        metric.process({}, [samples[i] for i in indices])
        out = metric.evaluate(len(samples))
        with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(out, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _five_samples():
    return _hand_samples() + [
        _sample(_mask((1, 4), (1, 4)), _mask((0, 4), (1, 4)), 14, 'spatial')
    ]


def test_real_two_rank_gloo_evaluation(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.spawn(_dist_worker, args=(port, str(tmp_path)), nprocs=2)
    single = ReferMetric()
    single.process({}, _five_samples())
    expected = single.compute_metrics(list(single.results))
    assert expected['mIoU'] == pytest.approx(60.0)  # (.5+1+.75+0+.75)/5
    for rank in range(2):
        got = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert got == pytest.approx(expected)


def test_final_metrics_table_rows():
    from sera_mm.engine.final_evaluation import metrics_table
    table = metrics_table({
        'val': {'mIoU': 50.0, 'oIoU': 40.0, 'Prec@0.5': 50.0,
                'attribute/mIoU': 75.0, 'attribute/count': 2.0,
                'spatial/mIoU': 25.0, 'spatial/count': 2}})
    lines = table.strip().splitlines()
    assert lines[2].startswith('| val | all | 4 | 50.00 | 40.00 | 50.00 |')
    assert lines[3].startswith('| val | attribute | 2 | 75.00 |')
    assert lines[4].startswith('| val | spatial | 2 | 25.00 |')


def test_final_metrics_table_counts_untyped_expressions():
    """RefCOCO has no expression types: the "all" row still gets the number
    of evaluated expressions (ReferMetric's ``count``)."""
    from sera_mm.engine.final_evaluation import metrics_table
    samples = _hand_samples()
    for s in samples:
        s['expr_type'] = None
    metric = ReferMetric()
    metric.process({}, samples)
    table = metrics_table({'val': metric.evaluate(4)})
    lines = table.strip().splitlines()
    assert len(lines) == 3
    assert lines[2].startswith('| val | all | 4 | 56.25 |')


def _lavt_sample(logits, gt, sent_id):
    return dict(sent_id=sent_id,
                seg_logits=dict(data=torch.tensor(logits,
                                                  dtype=torch.float32)[None]),
                pred_sem_seg=dict(data=(torch.tensor(logits) > -0.619)
                                  .long()[None]),  # p > 0.35
                gt_sem_seg=dict(data=torch.tensor(gt)[None]))


def test_lavt_protocol_on_hand_computed_values():
    from sera_mm.evaluation.refer_metric import ReferMetric
    # 2x2 masks, lavt_size 2: no resizing. Logit 0 is p = 0.5 (not
    # foreground under LAVT's > 0.5); logit -0.5 is p = 0.38 (foreground
    # at 0.35, background at 0.5).
    a = _lavt_sample([[2.0, 2.0], [-0.5, -3.0]], [[1, 1], [1, 1]], 'a')
    b = _lavt_sample([[2.0, 0.0], [-3.0, -3.0]], [[1, 1], [0, 0]], 'b')
    lavt = ReferMetric(protocol='lavt', lavt_size=2, thresholds=(0.5, ))
    lavt.process({}, [a, b])
    m = lavt.compute_metrics(lavt.results)
    # a: I 2, U 4 -> 0.5; b: I 1, U 2 -> 0.5
    assert m['mIoU'] == pytest.approx(50.0)
    assert m['oIoU'] == pytest.approx(3 / 6 * 100)
    assert m['Prec@0.5'] == pytest.approx(100.0)  # IoU >= 0.5 counts
    cris = ReferMetric(thresholds=(0.5, ))
    cris.process({}, [a, b])
    c = cris.compute_metrics(cris.results)
    # a: I 3, U 4 -> 0.75 (p = 0.38 > 0.35); b: I 2 (logit 0 is p 0.5 >
    # 0.35), U 2 -> 1.0
    assert c['mIoU'] == pytest.approx((0.75 + 1.0) / 2 * 100)
    assert c['oIoU'] == pytest.approx(5 / 6 * 100)
    # strict: an IoU of exactly 0.5 does not count under the default
    strict = ReferMetric(thresholds=(0.5, ))
    strict.results = list(lavt.results)
    assert strict.compute_metrics(strict.results)['Prec@0.5'] == 0.0


def test_lavt_protocol_resizes_to_its_square():
    from sera_mm.evaluation.refer_metric import ReferMetric
    # a 2x4 image: the left half is the object; resized to 4x4 the
    # prediction (left column only) covers half of it
    logits = [[5.0, -5.0, -5.0, -5.0], [5.0, -5.0, -5.0, -5.0]]
    gt = [[1, 1, 0, 0], [1, 1, 0, 0]]
    metric = ReferMetric(protocol='lavt', lavt_size=4, thresholds=(0.5, ))
    metric.process({}, [_lavt_sample(logits, gt, 's')])
    inter, union = metric.results[0][:2]
    assert (inter, union) == (4, 8)  # 4x4 square: 1 of 2 object columns
    with pytest.raises(ValueError, match='protocol'):
        ReferMetric(protocol='ris')
    with pytest.raises(KeyError, match='seg_logits'):
        metric.process({}, [dict(sent_id='x', gt_sem_seg=dict(
            data=torch.zeros(1, 2, 2)))])
