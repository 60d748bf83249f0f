"""Drawing helpers, ReferVisualizationHook (with a stand-in runner) and the
routing statistics (aggregation and md/csv/png writers)."""
import csv
import os
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.engine.hooks import ReferVisualizationHook
from sera_mm.registry import HOOKS
from sera_mm.visualization import (aggregate_routing, compose_refer_panel,
                                   draw_router_bars, expert_weights_by_name,
                                   format_router_stats_md, mask_iou,
                                   overlay_mask, router_group,
                                   routing_bar_data, write_router_stats)

A1 = 'backbone.adapters.1.router'
A3 = 'backbone.adapters.3.router'
N0 = 'neck.routers.0'


def _routing(a1, a3, neck):
    return {
        A1: dict(experts=['spatial', 'boundary'], weights=a1),
        A3: dict(experts=['spatial', 'boundary'], weights=a3),
        N0: dict(experts=['conv3', 'dilated', 'coord'], weights=neck),
    }


def _metas():
    return [
        dict(expr_type='attribute',
             routing=_routing([0.2, 0.8], [0.4, 0.6], [0.5, 0.25, 0.25])),
        dict(expr_type='attribute',
             routing=_routing([0.6, 0.4], [0.6, 0.4], [0.1, 0.1, 0.8])),
        dict(expr_type='spatial',
             routing=_routing([0.0, 1.0], [1.0, 0.0], [0.2, 0.3, 0.5])),
        dict(expr_type='spatial'),  # no routing: skipped
    ]


# -- routing statistics ------------------------------------------------------
def test_router_group_names():
    assert router_group(A3) == 'backbone.adapters.router'
    assert router_group(N0) == 'neck.routers'
    assert router_group('router') == 'router'


def test_aggregate_routing_hand_values():
    stats = aggregate_routing(_metas())
    assert stats['types'] == ['attribute', 'spatial', 'all']
    assert stats['counts'] == {'attribute': 2, 'spatial': 1, 'all': 3}
    assert stats['skipped'] == 1
    adapters = stats['groups']['backbone.adapters.router']
    # per sample the two adapters are averaged: (0.3, 0.7), (0.6, 0.4),
    # (0.5, 0.5); then averaged over the samples of a type.
    assert adapters['attribute']['count'] == 2
    assert adapters['attribute']['mean']['spatial'] == pytest.approx(0.45)
    assert adapters['attribute']['mean']['boundary'] == pytest.approx(0.55)
    assert adapters['spatial']['mean']['spatial'] == pytest.approx(0.5)
    assert adapters['all']['mean']['spatial'] == pytest.approx(1.4 / 3)
    neck = stats['groups']['neck.routers']
    assert list(neck['attribute']['mean'].values()) == pytest.approx(
        [0.3, 0.175, 0.525])
    a1 = stats['routers'][A1]
    assert a1['attribute']['mean']['spatial'] == pytest.approx(0.4)
    assert a1['all']['mean']['boundary'] == pytest.approx(2.2 / 3)
    assert stats['experts']['neck.routers'] == ['conv3', 'dilated', 'coord']


def test_aggregate_routing_untyped_and_errors():
    stats = aggregate_routing([dict(routing={N0: dict(
        experts=['a', 'b'], weights=[0.25, 0.75])})])
    assert stats['types'] == ['untyped', 'all']
    empty = aggregate_routing([])
    assert empty['types'] == [] and empty['groups'] == {}
    with pytest.raises(ValueError, match='2 experts but 3 weights'):
        aggregate_routing([dict(routing={N0: dict(
            experts=['a', 'b'], weights=[0.2, 0.3, 0.5])})])
    with pytest.raises(ValueError, match='neck.routers.0'):
        aggregate_routing([dict(routing={N0: [0.5, 0.5]})])


def test_router_stats_writers(tmp_path):
    stats = aggregate_routing(_metas())
    paths = write_router_stats(stats, str(tmp_path / 'stats'))
    assert set(paths) == {'md', 'csv', 'png', 'heatmap', 'json'}
    md = open(paths['md']).read()
    assert '### backbone.adapters.router' in md
    assert '### neck.routers' in md and f'### {A1}' in md
    assert '| expr_type | count | spatial | boundary |' in md
    assert '| attribute | 2 | 0.450 | 0.550 |' in md
    assert '| all | 3 | 0.467 | 0.533 |' in md
    assert '| attribute | 2 | 0.300 | 0.175 | 0.525 |' in md
    with open(paths['csv']) as f:
        rows = list(csv.DictReader(f))
    # 2 groups x 3 types x (2 or 3 experts) + 3 routers x 3 x (2 or 3)
    assert len(rows) == 3 * (2 + 3) + 3 * (2 + 2 + 3)
    row = [r for r in rows if r['level'] == 'group' and r['name'] ==
           'neck.routers' and r['expr_type'] == 'attribute' and
           r['expert'] == 'coord']
    assert len(row) == 1 and float(row[0]['weight']) == pytest.approx(0.525)
    assert row[0]['count'] == '2'
    png = cv2.imread(paths['png'])
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    assert png.std() > 0  # something was drawn
    assert sorted(p.name for p in (tmp_path / 'stats').iterdir()) == [
        'router_diagnostics.json', 'router_heatmap.png',
        'router_stats.csv', 'router_stats.md', 'router_stats.png']


def test_router_stats_writers_without_routing(tmp_path):
    stats = aggregate_routing([dict(expr_type='spatial')])
    paths = write_router_stats(stats, str(tmp_path))
    md = open(paths['md']).read()
    assert md == format_router_stats_md(stats)
    assert '0 samples with routing, 1 without' in md
    assert cv2.imread(paths['png']) is not None


# -- drawing helpers -------------------------------------------------------
def test_expert_weights_and_bar_data():
    routing = _metas()[0]['routing']
    means = expert_weights_by_name(routing)
    assert list(means) == ['spatial', 'boundary', 'conv3', 'dilated',
                           'coord']
    assert means['spatial'] == pytest.approx(0.3)
    assert means['coord'] == pytest.approx(0.25)
    weights, experts = routing_bar_data(routing, 'group')
    assert list(weights) == ['backbone.adapters.router', 'neck.routers']
    assert weights['backbone.adapters.router'][:2] == pytest.approx(
        [0.3, 0.7])
    assert np.isnan(weights['backbone.adapters.router'][2])
    weights, _ = routing_bar_data(routing, 'router')
    assert list(weights) == [A1, A3, N0]
    with pytest.raises(ValueError, match='mode'):
        routing_bar_data(routing, 'bogus')


def test_overlay_and_iou():
    image = np.zeros((8, 10, 3), np.uint8)
    mask = np.zeros((8, 10), bool)
    mask[2:6, 3:7] = True
    out = overlay_mask(image, mask, (0, 0, 200), alpha=0.5)
    assert out.shape == image.shape and out[4, 5, 2] == 100
    assert out[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match='does not match'):
        overlay_mask(image, mask[:4], (0, 0, 200))
    other = np.zeros_like(mask)
    other[2:6, 3:5] = True
    assert mask_iou(other, mask) == pytest.approx(0.5)
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_compose_panel_shapes():
    image = np.random.RandomState(0).randint(0, 255, (60, 90, 3), np.uint8)
    gt = np.zeros((60, 90), np.uint8)
    gt[10:40, 20:50] = 1
    pred = gt.copy()
    pred[10:40, 20:35] = 0
    routing = _metas()[0]['routing']
    full = compose_refer_panel(image, 'the red thing on the left', gt, pred,
                               routing, panel_height=120)
    no_router = compose_refer_panel(image, 'x', gt, pred, None,
                                    panel_height=120)
    assert full.dtype == np.uint8 and full.ndim == 3
    assert full.shape[0] == no_router.shape[0] > 120
    # three image panels 180 px wide each (+ gaps), plus the bar chart
    assert no_router.shape[1] == 3 * 180 + 2 * 4
    assert full.shape[1] == no_router.shape[1] + 4 + 150
    bars = draw_router_bars({'mean': [0.25, 1.0]}, ['a', 'b'], 100, 200)
    assert bars.shape == (100, 200, 3)
    assert (bars != 255).any()
    with pytest.raises(ValueError, match='uint8'):
        compose_refer_panel(image.astype(np.float32))


# -- the hook --------------------------------------------------------------
class _Visualizer:

    def __init__(self):
        self.calls = []

    def add_image(self, name, image, step=0):
        self.calls.append((name, image, step))


def _runner(tmp_path):
    return SimpleNamespace(work_dir=str(tmp_path / 'work'), iter=120,
                           epoch=3, visualizer=_Visualizer())


def _data_sample(img_path, sent_id, routing=None, h=48, w=64):
    gt = torch.zeros(1, h, w, dtype=torch.uint8)
    gt[0, 10:30, 10:40] = 1
    pred = torch.zeros(1, h, w, dtype=torch.uint8)
    pred[0, 10:30, 10:25] = 1
    meta = dict(img_path=img_path, text=f'expression {sent_id}',
                sent_id=sent_id, ori_shape=(h, w), expr_type='spatial')
    if routing is not None:
        meta['routing'] = routing
    sample = SegDataSample(metainfo=meta)
    sample.gt_sem_seg = PixelData(data=gt)
    sample.pred_sem_seg = PixelData(data=pred)
    return sample


def _image(tmp_path, h=48, w=64):
    path = str(tmp_path / 'img.png')
    img = np.random.RandomState(1).randint(0, 255, (h, w, 3), np.uint8)
    assert cv2.imwrite(path, img)
    return path


def test_hook_writes_num_samples(tmp_path):
    runner = _runner(tmp_path)
    hook = HOOKS.build(dict(type='ReferVisualizationHook', num_samples=3,
                            panel_height=64))
    assert isinstance(hook, ReferVisualizationHook)
    img = _image(tmp_path)
    routing = _metas()[0]['routing']
    hook.before_val_epoch(runner)
    for it in range(3):  # 2 samples per batch, 6 samples in all
        batch = [_data_sample(img, 10 * it + k, routing) for k in range(2)]
        hook.after_val_iter(runner, it, None, batch)
    out_dir = osp.join(runner.work_dir, 'vis', 'val', 'iter_120')
    files = sorted(os.listdir(out_dir))
    assert files == ['00_sent0.png', '01_sent1.png', '02_sent10.png']
    assert len(runner.visualizer.calls) == 3
    name, rgb, step = runner.visualizer.calls[0]
    assert name == 'val_refer_00_sent0' and step == 120
    png = cv2.imread(osp.join(out_dir, '00_sent0.png'))
    assert rgb.shape == png.shape and rgb.shape[0] > 64
    np.testing.assert_array_equal(rgb, png[..., ::-1])
    # four panels: three images of 64*64/48 = 85 px, plus the bar chart
    assert png.shape[1] > 3 * 85 + 80


def test_hook_without_routing_or_image(tmp_path):
    runner = _runner(tmp_path)
    hook = ReferVisualizationHook(num_samples=2, panel_height=48,
                                  out_dir=str(tmp_path / 'vis'))
    img = _image(tmp_path)
    hook.before_test_epoch(runner)
    hook.after_test_iter(runner, 0, None, [
        _data_sample(img, 1),  # no routing
        _data_sample(str(tmp_path / 'missing.png'), 2,
                     routing=_metas()[1]['routing'])
    ])
    assert len(hook.written) == 2
    with_img = cv2.imread(hook.written[0])
    placeholder = cv2.imread(hook.written[1])
    assert osp.dirname(hook.written[0]) == str(tmp_path / 'vis' / 'iter_120')
    # no router panel on the first, a router panel on the second
    assert placeholder.shape[1] > with_img.shape[1]
    # the placeholder's image panel is gray
    assert (placeholder[placeholder.shape[0] // 2, 2] == 128).all()
    assert (with_img[with_img.shape[0] // 2, 2] != 128).any()
    assert runner.visualizer.calls[0][0] == 'test_refer_00_sent1'


def test_hook_interval_and_draw_router_off(tmp_path):
    runner = _runner(tmp_path)
    hook = ReferVisualizationHook(interval=2, num_samples=1, panel_height=48,
                                  draw_router=False)
    img = _image(tmp_path)
    routing = _metas()[0]['routing']
    widths = []
    for run in range(3):
        runner.iter = 100 * (run + 1)
        hook.before_val_epoch(runner)
        hook.after_val_iter(runner, 0, None, [_data_sample(img, 5, routing)])
        widths += [cv2.imread(p).shape[1] for p in hook.written]
    steps = [c[2] for c in runner.visualizer.calls]
    assert steps == [100, 300]  # runs 1 and 3
    assert len(widths) == 2
    plain = compose_refer_panel(cv2.imread(img), 'x', np.ones((48, 64)),
                                np.ones((48, 64)), None, panel_height=48)
    assert widths[0] == plain.shape[1]  # no bar chart drawn
    with pytest.raises(ValueError, match='interval'):
        ReferVisualizationHook(interval=0)


# -- the command line ------------------------------------------------------
def _cli():
    import importlib.util
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools',
                    'analysis', 'router_stats.py')
    spec = importlib.util.spec_from_file_location('router_stats_cli', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_router_stats_cli_args(capsys):
    cli = _cli()
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(['--help'])
    assert exit_info.value.code == 0
    assert '--max-samples' in capsys.readouterr().out
    args = cli.parse_args(['cfg.py', 'ckpt.pth', '--split', 'testA',
                           '--max-samples', '5', '--cfg-options', 'a.b=1'])
    assert (args.split, args.max_samples, args.cfg_options) == (
        'testA', 5, {'a.b': 1})
    with pytest.raises(SystemExit):
        cli.parse_args(['cfg.py', 'ckpt.pth', '--max-samples', '0'])
    dataset = dict(type='RepeatDataset',
                   dataset=dict(type='ReferDataset', split='val'))
    cli._set_split(dataset, 'testB')
    assert dataset['dataset']['split'] == 'testB'
