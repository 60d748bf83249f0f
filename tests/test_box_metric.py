"""Boxes from masks: mask_to_box / box_iou, ReferBoxMetric (referring
expression comprehension Acc@X from predicted masks) and the ``boxes`` of
tools/infer.py's predictions.json, on hand-computed cases."""
import json

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.apis.prediction_io import (save_predictions,
                                        write_predictions_json)
from sera_mm.evaluation import PerSetMetric, ReferBoxMetric
from sera_mm.evaluation.boxes import (box_iou, flip_xywh, mask_to_box,
                                      xywh_to_xyxy)


def _m(rows, cols, size=10):
    m = np.zeros((size, size), np.uint8)
    if rows is not None:
        m[rows[0]:rows[1], cols[0]:cols[1]] = 1
    return m


def test_mask_to_box_by_hand():
    one = np.zeros((5, 6), bool)
    one[2, 3] = True
    assert mask_to_box(one) == [3, 2, 4, 3]  # one pixel: a 1 x 1 box
    assert mask_to_box(_m((1, 4), (2, 6))) == [2, 1, 6, 4]
    two = np.zeros((8, 8), np.uint8)
    two[0, 7] = 255
    two[5, 1] = 255  # two blobs: the box holds both
    assert mask_to_box(two) == [1, 0, 8, 6]
    assert mask_to_box(np.zeros((4, 4))) is None
    assert mask_to_box(_m((0, 2), (0, 2))[None]) == [0, 0, 2, 2]
    with pytest.raises(ValueError, match=r'expected an \(H, W\) mask'):
        mask_to_box(np.zeros(5))


def test_box_iou_by_hand():
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert box_iou([0, 0, 4, 4], [0, 0, 2, 4]) == pytest.approx(0.5)
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    assert box_iou([1, 1, 3, 3], [1, 1, 3, 3]) == 1.0
    assert box_iou(None, None) == 1.0
    assert box_iou(None, [0, 0, 1, 1]) == 0.0 == box_iou([0, 0, 1, 1], None)
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
    assert xywh_to_xyxy([1, 2, 3, 4]) == [1.0, 2.0, 4.0, 6.0]
    assert flip_xywh([0, 1, 4, 2], 10) == [6.0, 1.0, 4.0, 2.0]
    with pytest.raises(ValueError, match='negative'):
        xywh_to_xyxy([0, 0, -1, 2])


def _sample(gt, pred, sent_id, bbox=None, expr_type=None, **meta):
    s = dict(sent_id=sent_id, ref_id=sent_id,
             gt_sem_seg=dict(data=torch.as_tensor(gt)[None]),
             pred_sem_seg=dict(data=torch.as_tensor(pred)[None]), **meta)
    if bbox is not None:
        s['bbox'] = bbox
    if expr_type is not None:
        s['expr_type'] = expr_type
    return s


BLOCK = _m((0, 4), (0, 4))  # box [0, 0, 4, 4], 16 px


def _cases():
    return [
        # A: the mask itself: IoU 1
        _sample(BLOCK, BLOCK, 0, [0, 0, 4, 4], 'spatial'),
        # B: left half: box [0, 0, 2, 4], IoU 8/16 = 0.5 (counts: >=)
        _sample(BLOCK, _m((0, 4), (0, 2)), 1, [0, 0, 4, 4], 'spatial'),
        # C: one column: IoU 4/16 = 0.25
        _sample(BLOCK, _m((0, 4), (0, 1)), 2, [0, 0, 4, 4], 'attribute'),
        # D: empty prediction: no box, a miss
        _sample(BLOCK, _m(None, None), 3, [0, 0, 4, 4], 'attribute'),
        # E: the annotation box (8 x 8) is larger than the mask's box:
        #    IoU 16/64 with it, 1 with the mask's
        _sample(BLOCK, BLOCK, 4, [0, 0, 8, 8]),
        # F: no annotation box: the ground-truth mask's box, IoU 1
        _sample(BLOCK, BLOCK, 5),
    ]


def _run(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_box_accuracy_by_hand():
    out = _run(ReferBoxMetric(thresholds=(0.5, 0.75)), _cases())
    assert out['BoxAcc@0.5'] == pytest.approx(100 * 3 / 6)  # A, B, F
    assert out['BoxAcc@0.75'] == pytest.approx(100 * 2 / 6)  # A, F
    assert out['BoxEmpty'] == pytest.approx(100 / 6)  # D
    assert out['spatial/BoxAcc@0.5'] == 100.0
    assert out['spatial/BoxAcc@0.75'] == 50.0
    assert out['attribute/BoxAcc@0.5'] == 0.0
    assert 'count' not in out and 'mIoU' not in out  # no clash
    # the ground-truth mask's box everywhere: E becomes a hit
    mask = _run(ReferBoxMetric(gt_box='mask'), _cases())
    assert mask['BoxAcc@0.5'] == pytest.approx(100 * 4 / 6)
    with pytest.raises(KeyError, match='needs "bbox"'):
        _run(ReferBoxMetric(gt_box='ann'), _cases())
    with pytest.raises(ValueError, match='gt_box'):
        ReferBoxMetric(gt_box='box')
    with pytest.raises(ValueError, match='thresholds'):
        ReferBoxMetric(thresholds=(0.0, ))


def test_empty_ground_truth_flip_and_no_samples():
    empty = _m(None, None)
    out = _run(ReferBoxMetric(), [
        _sample(empty, empty, 0),          # nothing to find, nothing found
        _sample(empty, BLOCK, 1)])         # a box where there is none
    assert out['BoxAcc@0.5'] == 50.0 and out['BoxEmpty'] == 50.0
    # a horizontally flipped sample: masks flipped, annotation box mirrored
    flipped = np.ascontiguousarray(BLOCK[:, ::-1])
    out = _run(ReferBoxMetric(), [
        _sample(flipped, flipped, 0, [0, 0, 4, 4], flip=True,
                flip_direction='horizontal')])
    assert out['BoxAcc@0.5'] == 100.0
    assert _run(ReferBoxMetric(), []) == {'BoxAcc@0.5': 0.0,
                                          'BoxEmpty': 0.0}


def test_box_and_mask_metrics_per_split():
    metric = PerSetMetric(metric=[dict(type='ReferMetric'),
                                  dict(type='ReferBoxMetric')],
                          mean_keys=('BoxAcc@0.5', ))
    a, b = _cases()[:2]
    a['eval_set'] = 'x/val'
    b['eval_set'] = 'x/test'
    out = _run(metric, [a, b])
    assert out['x/val/BoxAcc@0.5'] == 100.0 and out['x/val/mIoU'] == 100.0
    assert out['x/test/BoxAcc@0.5'] == 100.0  # IoU 0.5 exactly
    assert out['x/test/mIoU'] == 50.0
    assert out['mean/BoxAcc@0.5'] == 100.0


def test_infer_predictions_json_has_boxes(tmp_path):
    """tools/infer.py writes its records through save_predictions and
    write_predictions_json: each record's ``boxes`` is the mask's tight
    box, null for an empty mask."""
    img = np.zeros((6, 8, 3), np.uint8)
    masks = [np.zeros((6, 8), np.int64), np.zeros((6, 8), np.int64)]
    masks[0][1:3, 2:7] = 1
    samples = []
    for text, mask in zip(('the thing', 'nothing'), masks):
        s = SegDataSample(metainfo=dict(text=text))
        s.pred_sem_seg = PixelData(data=torch.as_tensor(mask)[None])
        samples.append(s)
    records = save_predictions(img, samples, str(tmp_path), 'img',
                               image_name='img.png')
    assert records[0]['boxes'] == [2, 1, 7, 3]
    assert records[1]['boxes'] is None
    path = write_predictions_json(records, str(tmp_path))
    saved = json.load(open(path))
    assert saved[0]['boxes'] == [2, 1, 7, 3]
    assert saved[1]['boxes'] is None
    assert '"boxes": null' in open(path).read()
