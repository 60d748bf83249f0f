"""Tests of the benchmark tool (tools/analysis/benchmark.py) and its
measuring harness (tools/analysis/benchmark_harness.py)."""
import csv
import importlib.util
import math
import os.path as osp
import statistics
import sys
import time

import pytest

import sera_mm  # noqa: F401 (mmcv.ops fallback before mmseg)
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
import benchmark_harness as bm  # noqa: E402
TINY = osp.join(ROOT, 'configs', 'sera', 'sera_tiny_synthetic.py')
VITB = osp.join(ROOT, 'configs', 'sera', 'sera_vitb_refcoco.py')


def _load_tool(name='benchmark'):
    """A script of tools/analysis/ as a module (default: benchmark.py)."""
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'{name}_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model_cfg(path):
    return Config.fromfile(path).model.to_dict()


# ------------------------------------------------------------ cfg editing
def test_adapter_layers_zero_removes_adapters():
    cfg = _model_cfg(VITB)
    out = bm.apply_sweep(cfg, 'adapter_layers', 0)
    assert out['backbone']['adapter'] is None
    assert tuple(out['backbone']['adapter_indices']) == ()
    # the input is not modified
    assert cfg['backbone']['adapter'] is not None


def test_adapter_layers_evenly_spaced():
    cfg = _model_cfg(VITB)
    assert bm.apply_sweep(cfg, 'adapter_layers',
                          6)['backbone']['adapter_indices'] == (1, 3, 5, 7,
                                                                9, 11)
    two = bm.apply_sweep(cfg, 'adapter_layers', 2)['backbone']
    assert len(two['adapter_indices']) == 2
    assert max(two['adapter_indices']) == max(cfg['backbone']['out_indices'])
    with pytest.raises(ValueError, match='adapter_layers'):
        bm.apply_sweep(cfg, 'adapter_layers', 13)


def test_num_experts_truncates_adapter_and_neck():
    cfg = _model_cfg(VITB)
    out = bm.apply_sweep(cfg, 'num_experts', 2)
    assert tuple(out['backbone']['adapter']['experts']) == ('spatial',
                                                            'context')
    assert len(out['neck']['experts']) == 2
    with pytest.raises(ValueError, match='num_experts'):
        bm.apply_sweep(cfg, 'num_experts', 0)


def test_num_experts_builds_model_with_that_many_experts():
    cfg = bm.apply_sweep(_model_cfg(TINY), 'num_experts', 2)
    model = bm.build_subject(cfg, 'sera')
    routers = dict(model.routers())
    assert routers
    for name, router in routers.items():
        assert len(router.expert_names) == 2, name
    bare = bm.build_subject(cfg, 'bare')
    assert len(bare.backbone.adapters) == 0


def test_input_size_and_parse_sweep():
    cfg = bm.apply_sweep(_model_cfg(VITB), 'input_size', 320)
    assert tuple(cfg['data_preprocessor']['size']) == (320, 320)
    with pytest.raises(ValueError, match='patch size'):
        bm.apply_sweep(_model_cfg(VITB), 'input_size', 100)
    assert bm.parse_sweep('batch=1,2, 4') == ('batch', [1, 2, 4])
    with pytest.raises(ValueError, match='--sweep key'):
        bm.parse_sweep('depth=1,2')
    with pytest.raises(ValueError, match='integers'):
        bm.parse_sweep('batch=1,x')


def test_peak_memory_sees_an_allocation():
    import torch
    with bm.PeakMemory('cpu') as mem:
        x = torch.ones(16 * 1024 * 1024 // 4)  # 16 MB
        x.add_(1)
    del x
    assert mem.peak >= 8 * 1024 * 1024


# ------------------------------------------------------------ end to end
def test_benchmark_tool_tiny(tmp_path):
    tool = _load_tool()
    out = tmp_path / 'bench'
    result = tool.main([
        TINY, '--runs', '2', '--warmup', '1', '--throughput-batch', '2',
        '--batch-size', '2', '--threads', '2', '--sweep',
        'input_size=64,96', '--sweep', 'num_experts=1,4', '--isolation',
        'none', '--out-dir',
        str(out)
    ])
    for name in ('benchmark.md', 'benchmark.csv', 'benchmark.png'):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert result['paths']['csv'] == str(out / 'benchmark.csv')

    with open(out / 'benchmark.csv') as f:
        rows = list(csv.DictReader(f))
    main = {r['metric']: r for r in rows if r['section'] == 'main'}
    expected = {
        'latency, batch 1', 'throughput, batch 2', 'train step, batch 2',
        'peak memory increase, inference batch 1',
        'peak memory increase, train step batch 2', 'FLOPs, forward batch 1',
        'parameters, total', 'parameters, trainable'
    }
    assert expected <= set(main)
    # interleaved timing: both medians positive, ratio = median of pairs
    paired = main['latency, batch 1, interleaved runs']
    assert float(paired['sera']) > 0 and float(paired['bare']) > 0
    assert float(paired['ratio']) > 0
    assert math.isclose(result['results'][('paired', )]['ratio'],
                        float(paired['ratio']), rel_tol=1e-4)
    assert len(result['results'][('paired', )]['ratios']) == 2
    positive = ('latency, batch 1', 'throughput, batch 2',
                'train step, batch 2', 'FLOPs, forward batch 1',
                'parameters, total', 'parameters, trainable')
    for metric in positive:
        r = main[metric]
        sera, bare, ratio = (float(r[k]) for k in ('sera', 'bare', 'ratio'))
        assert sera > 0 and bare > 0, metric
        assert math.isclose(ratio, sera / bare, rel_tol=1e-3), metric
    # SERA adds the adapters, the neck and the head to the encoders
    assert float(main['parameters, total']['ratio']) > 1
    assert float(main['FLOPs, forward batch 1']['ratio']) > 1
    for metric, r in main.items():
        if metric.startswith('peak memory'):
            assert float(r['sera']) >= 0 and float(r['bare']) >= 0

    for key, values in (('input_size', {'64', '96'}),
                        ('num_experts', {'1', '4'})):
        srows = [r for r in rows if r['section'] == f'sweep:{key}']
        assert {r['setting'] for r in srows} == values
        for v in values:
            metrics = {r['metric']: float(r['sera'])
                       for r in srows if r['setting'] == v}
            assert metrics['latency'] > 0 and metrics['train step'] > 0
            assert metrics['peak memory increase, inference'] >= 0
    md = (out / 'benchmark.md').read_text()
    assert '## Sweep: input_size' in md and '## Sweep: num_experts' in md
    assert '| metric | SERA | bare encoders | ratio |' in md


def test_measure_paired_alternates_and_takes_median_ratio(monkeypatch):
    calls = []
    cost = dict(sera=0.003, bare=0.001)

    class FakeRunner:

        def __init__(self, model, *args):
            self.subject = model

        def infer(self, batch, size):
            def step():
                calls.append(self.subject)
                time.sleep(cost[self.subject])
            return step

    monkeypatch.setattr(bm, 'build_subject', lambda cfg, s, d: s)
    monkeypatch.setattr(bm, 'Runner', FakeRunner)
    res = bm.measure_paired(
        dict(cfg_model={}, size=32, runs=4, warmup=1, latency_batch=1))
    # one warm-up pair, then pairs whose first subject alternates
    assert calls == ['sera', 'bare', 'sera', 'bare', 'bare', 'sera',
                     'sera', 'bare', 'bare', 'sera']
    assert len(res['ratios']) == 4
    assert res['ratio'] == statistics.median(res['ratios'])
    assert res['sera_s'] > res['bare_s'] and res['ratio'] > 1.5
    with pytest.raises(ValueError, match='runs must be >= 1'):
        bm.measure_paired(dict(cfg_model={}, size=32, runs=0, warmup=0))


def test_measure_isolated_runs_in_child_process():
    cfg = _model_cfg(TINY)
    res = bm.measure_isolated(
        dict(cfg_model=cfg, subject='bare', device='cpu', threads=1,
             size=64, latency_batch=1, throughput_batch=0, train_batch=0,
             runs=1, warmup=0, flops=False, params=True))
    assert res['latency_s'] > 0
    assert res['max_rss'] >= res['ready_rss'] > 0
    assert res['params_trainable'] < res['params_total']


def test_training_step_profile_by_part(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sera',
                                   'sera_tiny_synthetic.py'))
    runner = bm.Runner(bm.build_subject(cfg.model.to_dict(), 'sera'))
    before = runner.model.neck.forward
    prof = bm.profile_train_step(runner, batch=2, size=64, runs=2, warmup=1)
    for part in ('text_encoder', 'backbone', 'neck', 'decode_head',
                 'backbone.adapters.1', 'backbone without adapters'):
        assert prof[f'{part}/forward']['median'] >= 0, part
    assert prof['backbone/forward']['median'] >= \
        prof['backbone.adapters.1/forward']['median']
    total = prof['step']['median']
    assert total >= prof['forward (loss)']['min']
    assert 'forward' not in runner.model.neck.__dict__  # wrappers removed
    assert runner.model.neck.forward == before
    text = bm.format_profile(prof, 'tiny', 'setup')
    assert '| decode_head |' in text and '| step |' in text


def test_operator_profile_includes_backward_and_sums_to_total(tmp_path):
    """--profile --profile-ops N: operators by self time per step, the
    backward ones included; the per-operator totals add up to the step's
    self time; ops.md is written."""
    tool = _load_tool()
    out = tmp_path / 'prof'
    result = tool.main([
        TINY, '--profile', '--profile-ops', '5', '--runs', '2', '--warmup',
        '1', '--batch-size', '2', '--threads', '1', '--input-size', '64',
        '--out-dir', str(out)])
    ops = result['ops']
    assert len(ops['rows']) == 5
    shares = [r['share'] for r in ops['rows']]
    assert shares == sorted(shares, reverse=True) and 0 < shares[0] <= 1
    assert math.isclose(sum(ops['by_op'].values()), ops['total_ms'],
                        rel_tol=1e-6)
    assert any(name.endswith('_backward') for name in ops['by_op'])
    md = (out / 'ops.md').read_text()
    assert 'self ms / step' in md and ops['rows'][0]['op'] in md
    assert (out / 'profile.md').exists()


def test_memory_over_steps_records_every_step_on_new_batches(monkeypatch):
    """--memory-steps: RSS after each of N training steps of one optimizer,
    each step on a new batch (other expressions and images)."""
    cfg = bm.set_input_size(_model_cfg(TINY), 64)
    runner = bm.Runner(bm.build_subject(cfg, 'sera'), 'cpu')
    seen = []
    real = bm.synthetic_batch

    def spy(batch, size, with_gt=False, seed=0):
        out = real(batch, size, with_gt, seed)
        seen.append(([s.metainfo['text'] for s in out['data_samples']],
                     out['inputs'][0].clone()))
        return out

    monkeypatch.setattr(bm, 'synthetic_batch', spy)
    res = bm.memory_over_steps(runner, 2, 64, 3)
    assert len(res['train_rss_steps']) == 3
    assert all(v > 0 for v in res['train_rss_steps'])
    assert res['train_rss_first'] == res['train_rss_steps'][0]
    assert res['train_rss_last'] == res['train_rss_steps'][-1]
    assert res['train_rss_growth'] == (res['train_rss_steps'][2] -
                                       res['train_rss_steps'][1])
    assert len(seen) == 3  # the first batch, then a new one per step
    assert seen[0][0] != seen[1][0] != seen[2][0]
    assert not bool((seen[0][1] == seen[1][1]).all())
    with pytest.raises(ValueError, match='>= 2'):
        bm.memory_over_steps(runner, 2, 64, 1)
    tool = _load_tool()
    with pytest.raises(SystemExit):
        tool.parse_args([TINY, '--memory-steps', '1'])
    rows = tool.main_rows(dict(res), dict(res), 2, 0, 3)
    labels = {r['metric'] for r in rows}
    assert 'process memory after training step 3' in labels
    assert 'growth from training step 2 to 3' in labels


def test_compare_times_two_configs_in_alternation(tmp_path, monkeypatch):
    """--compare-options: a (the config) and b (config + options) are timed
    in alternating pairs in one process; compare.md has min/median/max and
    the per-pair ratio b / a."""
    order = []
    real_runner = bm.Runner

    class Tagged(real_runner):
        def train_step(self, batch, size, vary=False):
            step = super().train_step(batch, size, vary)
            tag = self.model.decode_head.channels

            def tagged():
                order.append(tag)
                return step()
            return tagged

    monkeypatch.setattr(bm, 'Runner', Tagged)
    tool = _load_tool()
    out = tmp_path / 'cmp'
    channels = Config.fromfile(TINY).model.decode_head.channels
    result = tool.main([
        TINY, '--compare-options', f'model.decode_head.channels={channels * 2}',
        '--runs', '4', '--warmup', '1', '--batch-size', '2', '--threads',
        '1', '--isolation', 'none', '--input-size', '64', '--out-dir',
        str(out)])
    res = result['compare']
    assert len(res['ratios']) == 4
    assert math.isclose(res['ratio'], statistics.median(res['ratios']))
    for key in ('a', 'b'):
        assert 0 < res[key]['min'] <= res[key]['median'] <= res[key]['max']
    # warm-up a b, then pairs a b | b a | a b | b a
    a, b = channels, channels * 2
    assert order == [a, b, a, b, b, a, a, b, b, a]
    assert set(res['first']) == {'a', 'b'} and min(res['first'].values()) > 0
    md = (out / 'compare.md').read_text()
    assert 'b / a, per pair' in md and f'channels={channels * 2}' in md
    assert 'First call' in md
    with pytest.raises(ValueError, match='kind'):
        bm.measure_compare(dict(cfg_models={}, kind='nope', runs=1,
                                warmup=0))


def test_compare_amp_channels_last_compile_change_only_b(
        tmp_path, monkeypatch):
    """--compare-amp / --compare-channels-last / --compare-compile: the
    same config in both slots, b under autocast, in channels-last and
    compiled, a as configured (compiling itself is tested in
    test_sera_adapter.py; the config key in test_tools.py)."""
    seen = []
    real_runner = bm.Runner

    class Recording(real_runner):
        def __init__(self, model, device='cpu', amp=False,
                     channels_last=False, compile=False):
            super().__init__(model, device, amp, channels_last)
            seen.append((amp, channels_last, compile))

    monkeypatch.setattr(bm, 'Runner', Recording)
    tool = _load_tool()
    out = tmp_path / 'cmp'
    result = tool.main([
        TINY, '--compare-amp', '--compare-channels-last', '--compare-compile',
        '--runs', '2', '--warmup', '0', '--batch-size', '2', '--threads',
        '1', '--isolation', 'none', '--input-size', '64', '--out-dir',
        str(out)])
    assert seen == [(False, False, False), (True, True, True)]
    assert len(result['compare']['ratios']) == 2
    assert result['compare']['first'] is None  # no warm-up call
    md = (out / 'compare.md').read_text()
    assert '+ autocast + channels-last + torch.compile' in md


def test_project_config_modules_are_imported_for_the_benchmark():
    """A project config registers its parts through custom_imports; the
    benchmark imports them (in the measuring process too) so the model
    builds."""
    project = osp.join(ROOT, 'projects', 'etris_sera', 'configs',
                       'etris_tiny_synthetic.py')
    cfgs = [Config.fromfile(TINY), Config.fromfile(project)]
    names = bm.config_imports(*cfgs)
    assert 'sera_mm' in names and any(
        n.startswith('projects.etris_sera') for n in names)
    assert len(names) == len(set(names))
    bm.import_config_modules(names)
    from sera_mm.registry import MODELS
    assert MODELS.get('ETRISBridge') is not None
    with pytest.raises(ModuleNotFoundError):
        bm.import_config_modules(['no_such_module_xyz'])


def _write_log(path, start, iters, step_s, logged):
    import datetime as dt
    t0 = dt.datetime(2026, 1, 1, 10, 0, 0)
    lines = ['2026/01/01 10:00:00 - mmengine - INFO - Checkpoints will be '
             'saved to somewhere.']
    for i in iters:
        stamp = t0 + dt.timedelta(seconds=start + i * step_s)
        lines.append(f'{stamp:%Y/%m/%d %H:%M:%S} - mmengine - INFO - '
                     f'Iter(train) [{i:>4}/600]  lr: 1.0e-04  eta: 0:01:00  '
                     f'time: {logged:.4f}  data_time: 0.0100  loss: 0.5')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(lines) + '\n')


def test_train_speed_compares_two_runs_over_their_common_window(tmp_path):
    ts = _load_tool('train_speed')
    # a: 2 s per iteration from t=0; b: 1.5 s per iteration from t=100 s
    _write_log(tmp_path / 'a' / '20260101_100000' / 'x.log', 0,
               range(0, 601, 20), 2.0, 2.0)
    _write_log(tmp_path / 'b' / '20260101_100140' / 'y.log', 100,
               range(0, 601, 20), 1.5, 1.5)
    out = tmp_path / 'speed.md'
    res = ts.main([str(tmp_path / 'a'), str(tmp_path / 'b'),
                   '--batch-size', '16', '--out', str(out)])
    # window: b's start (100 s) to the end of b (1000 s)
    assert res['a']['first_iter'] == 60 and res['a']['last_iter'] == 500
    assert res['a']['s_per_iter'] == pytest.approx(2.0)
    assert res['b']['s_per_iter'] == pytest.approx(1.5)
    assert res['ratio'] == pytest.approx(0.75)
    assert res['logged_ratio'] == pytest.approx(0.75)
    assert res['b']['images_per_s'] == pytest.approx(16 / 1.5)
    assert '**0.750**' in out.read_text()
    # runs that never trained at the same time
    _write_log(tmp_path / 'late.log', 5000, range(0, 601, 20), 1.0, 1.0)
    with pytest.raises(ValueError, match='same time'):
        ts.compare_logs(str(tmp_path / 'a' / '20260101_100000' / 'x.log'),
                        str(tmp_path / 'late.log'))
    with pytest.raises(FileNotFoundError, match='no mmengine log'):
        ts.find_log(str(tmp_path / 'empty_dir_made') if (
            tmp_path / 'empty_dir_made').mkdir() is None else '')
    (tmp_path / 'nolines.log').write_text('nothing here\n')
    with pytest.raises(ValueError, match='fewer than two'):
        ts.read_points(str(tmp_path / 'nolines.log'))


def test_profile_ops_needs_profile():
    tool = _load_tool()
    with pytest.raises(SystemExit, match='needs --profile'):
        tool.main([TINY, '--profile-ops', '5'])
    with pytest.raises(SystemExit, match='>= 0'):
        tool.main([TINY, '--profile', '--profile-ops', '-1'])
