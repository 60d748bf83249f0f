"""Router hooks (temperature annealing, routing diagnostics in the log) and
the expression-awareness numbers they and the statistics tool report."""
import json
import math
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmengine.logging import MessageHub

from sera_mm.engine.hooks import RouterStatsHook, RouterTemperatureHook
from sera_mm.models.routers import ExpertRouter
from sera_mm.visualization import (aggregate_routing,
                                   mutual_information_bits,
                                   routing_diagnostics, write_router_stats)


# ------------------------------------------------------------ diagnostics
def test_mutual_information_on_hand_computed_tables():
    # type determines the expert: MI = H(type) = 1 bit
    assert mutual_information_bits(['a', 'a', 'b', 'b'],
                                   [0, 0, 1, 1]) == pytest.approx(1.0)
    # independent: 0 bits
    assert mutual_information_bits(['a', 'a', 'b', 'b'],
                                   [0, 1, 0, 1]) == pytest.approx(0.0)
    # p(a,0)=1/2, p(b,0)=1/4, p(b,1)=1/4
    expected = (0.5 * math.log2(0.5 / (0.5 * 0.75)) +
                0.25 * math.log2(0.25 / (0.5 * 0.75)) +
                0.25 * math.log2(0.25 / (0.5 * 0.25)))
    assert mutual_information_bits(['a', 'a', 'b', 'b'],
                                   [0, 0, 0, 1]) == pytest.approx(expected)
    with pytest.raises(ValueError, match='same length'):
        mutual_information_bits(['a'], [0, 1])


def test_routing_diagnostics_entropy_and_gap():
    w = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    d = routing_diagnostics(w, ['x', 'x', 'y', 'y'], ['e0', 'e1'])
    assert d['entropy_bits'] == pytest.approx(0.5)  # (0 + 0 + 1 + 1) / 4
    assert d['entropy_ratio'] == pytest.approx(0.5)
    assert d['max_gap'] == pytest.approx(0.5)
    assert d['gap_expert'] in ('e0', 'e1')
    assert d['gap_types'] in (('x', 'y'), ('y', 'x'))
    # argmax of a tie is expert 0: every sample's top expert is e0
    assert d['mutual_info_bits'] == pytest.approx(0.0)
    assert d['top_share'] == {'e0': 1.0, 'e1': 0.0}
    uniform = routing_diagnostics(np.full((3, 4), 0.25))
    assert uniform['entropy_ratio'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='labels'):
        routing_diagnostics(w, ['x'])


def test_aggregate_routing_reports_diagnostics_and_heatmap(tmp_path):
    metas = []
    for i in range(20):
        t = 'spatial' if i % 2 else 'attribute'
        w = [0.9, 0.1] if t == 'spatial' else [0.2, 0.8]
        metas.append(dict(expr_type=t, routing={
            'neck.routers.0': {'experts': ['coord', 'conv'], 'weights': w}}))
    stats = aggregate_routing(metas)
    d = stats['diagnostics']['neck.routers.0']
    assert d['mutual_info_bits'] == pytest.approx(1.0)
    assert d['max_gap'] == pytest.approx(0.7)
    paths = write_router_stats(stats, str(tmp_path))
    assert osp.getsize(paths['heatmap']) > 1000
    assert open(paths['heatmap'], 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert json.load(open(paths['json']))['neck.routers.0'][
        'mutual_info_bits'] == pytest.approx(1.0)
    md = open(paths['md']).read()
    assert '## Expression-awareness' in md and '| 1.000 |' in md


# --------------------------------------------------------------- runners
class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.r = ExpertRouter(4, 3, 2)
        self.u = ExpertRouter(4, 3, 2, mode='uniform')


def _runner(model, tmp_path, it=0, max_iters=100):
    return SimpleNamespace(model=model, iter=it, max_iters=max_iters,
                           log_dir=str(tmp_path),
                           message_hub=MessageHub.get_instance('router'))


@pytest.mark.parametrize('schedule', ['linear', 'cosine', 'exp'])
def test_temperature_schedule_values(schedule):
    hook = RouterTemperatureHook(start=1.0, end=0.25, begin=10, stop=110,
                                 schedule=schedule)
    assert hook.value(0, 200) == pytest.approx(1.0)
    assert hook.value(10, 200) == pytest.approx(1.0)
    assert hook.value(110, 200) == pytest.approx(0.25)
    assert hook.value(500, 200) == pytest.approx(0.25)
    mid = hook.value(60, 200)
    expected = {'linear': 0.625, 'cosine': 0.625, 'exp': 0.5}[schedule]
    assert mid == pytest.approx(expected)
    assert hook.value(35, 200) > hook.value(85, 200)


def test_temperature_hook_sets_learned_routers_and_resumes(tmp_path):
    model = _Model()
    hook = RouterTemperatureHook(start=2.0, end=0.5, schedule='linear')
    runner = _runner(model, tmp_path, it=50, max_iters=100)
    hook.before_train_iter(runner, 0)
    assert model.r.temperature == pytest.approx(1.25)
    # a resumed run at iteration 50 gets the same value: it depends only on
    # the iteration
    other = _Model()
    hook.before_train_iter(_runner(other, tmp_path, 50, 100), 0)
    assert other.r.temperature == pytest.approx(1.25)
    hook.after_train(runner)
    assert model.r.temperature == pytest.approx(0.5)
    # the final value travels with the state dict
    fresh = _Model()
    fresh.load_state_dict(model.state_dict())
    assert fresh.r.temperature == pytest.approx(0.5)
    with pytest.raises(ValueError, match='schedule'):
        RouterTemperatureHook(schedule='step')
    with pytest.raises(ValueError, match='> 0'):
        RouterTemperatureHook(end=0.0)


def test_router_stats_hook_logs_windows(tmp_path):
    torch.manual_seed(0)
    model = _Model()
    with torch.no_grad():  # route by the sentence's first feature
        model.r.fc_out.weight.normal_(std=5.0)
    hook = RouterStatsHook(interval=2)
    types = ['spatial', 'attribute'] * 4
    for it in range(2):
        sentence = torch.randn(8, 3)
        model.r(torch.randn(8, 4, 2, 2), sentence)
        model.u(torch.randn(8, 4, 2, 2), sentence)
        batch = dict(data_samples=[dict(expr_type=t) for t in types])
        runner = _runner(model, tmp_path, it=it)
        hook.after_train_iter(runner, it, batch)
    lines = open(osp.join(str(tmp_path), 'routing_stats.jsonl')).readlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record['iter'] == 2 and record['samples'] == 16
    assert set(record['routers']) == {'r', 'u'}
    u = record['routers']['u']
    assert u['entropy_ratio'] == pytest.approx(1.0)
    assert set(u['per_type']) == {'spatial', 'attribute'}
    hub = runner.message_hub
    assert hub.get_scalar('routing/u/entropy_ratio').current() == \
        pytest.approx(1.0)
    assert 'routing/r/mi_bits' in hub.log_scalars
    assert hook._labels == []  # a new window
