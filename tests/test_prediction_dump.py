"""PredictionDumpHook under distributed testing: the samples that the
sampler pads onto the last ranks appear once in the index, and their extra
mask files are removed."""
import json
import os
from types import SimpleNamespace

import torch
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.engine.hooks import prediction_dump_hook as pdh  # noqa: E402


def test_interleave_restores_order_and_drops_padding():
    # DefaultSampler, 5 samples on 2 ranks: padded [0 1 2 3 4 0]
    rank0, rank1 = ['s0', 's2', 's4'], ['s1', 's3', 's0']
    assert pdh.interleave_ranks([rank0, rank1], 5) == [
        's0', 's1', 's2', 's3', 's4']
    assert pdh.interleave_ranks([rank0, rank1], None) == [
        's0', 's1', 's2', 's3', 's4', 's0']
    assert pdh.interleave_ranks([], 3) == []


def _sample(i, sent_id=True):
    s = SegDataSample()
    meta = dict(img_path=f'/d/img{i}.png', text=f'expr {i}', ori_shape=(4, 4))
    if sent_id:
        meta['sent_id'] = i
    s.set_metainfo(meta)
    s.pred_sem_seg = PixelData(data=torch.ones(1, 4, 4, dtype=torch.long))
    return s


def test_hook_keeps_each_sample_once_under_two_ranks(tmp_path, monkeypatch):
    out = tmp_path / 'out'
    ranks = {0: [0, 2, 4], 1: [1, 3, 0]}  # 5 samples, 2 ranks, one repeat
    hooks = {}
    for rank, order in ranks.items():
        hook = pdh.PredictionDumpHook(str(out))
        runner = SimpleNamespace(rank=rank)
        hook.before_test(runner)
        for i in order:  # no sent_id: names from a per-rank counter
            hook.after_test_iter(runner, 0, outputs=[_sample(i, False)])
        hooks[rank] = hook
    parts = [hooks[0].records, hooks[1].records]
    monkeypatch.setattr(pdh, 'all_gather_object', lambda records: parts)
    monkeypatch.setattr(pdh, 'is_main_process', lambda: True)
    logged = []
    runner = SimpleNamespace(
        rank=0, test_dataloader=SimpleNamespace(dataset=list(range(5))),
        logger=SimpleNamespace(info=logged.append))
    hooks[0].after_test_epoch(runner)
    records = json.loads((out / 'predictions.json').read_text())
    assert sorted(r['text'] for r in records) == [f'expr {i}'
                                                  for i in range(5)]
    masks = sorted(os.listdir(out / 'masks'))
    assert len(masks) == 5 and 'img0_r1_000003.png' not in masks
    assert logged == [f'wrote 5 predictions to {out}']
