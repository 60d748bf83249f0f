"""Tests of the benchmark (the package tools/analysis/benchmark behind
tools/analysis/benchmark.py): what it plans, measures and reports."""
import csv
import importlib.util
import inspect
import math
import os.path as osp
import statistics
import subprocess
import sys
import time

import pytest

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
from benchmark import cli, measure, plan, profiling, report  # noqa: E402
from benchmark import run as bench_run  # noqa: E402
from benchmark import stats, subjects  # noqa: E402
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
    out = plan.apply_sweep(cfg, 'adapter_layers', 0)
    assert out['backbone']['adapter'] is None
    assert tuple(out['backbone']['adapter_indices']) == ()
    # the input is not modified
    assert cfg['backbone']['adapter'] is not None


def test_adapter_layers_evenly_spaced():
    cfg = _model_cfg(VITB)
    assert plan.apply_sweep(cfg, 'adapter_layers',
                            6)['backbone']['adapter_indices'] == (1, 3, 5, 7,
                                                                  9, 11)
    two = plan.apply_sweep(cfg, 'adapter_layers', 2)['backbone']
    assert len(two['adapter_indices']) == 2
    assert max(two['adapter_indices']) == max(cfg['backbone']['out_indices'])
    with pytest.raises(ValueError, match='adapter_layers'):
        plan.apply_sweep(cfg, 'adapter_layers', 13)


def test_num_experts_truncates_adapter_and_neck():
    cfg = _model_cfg(VITB)
    out = plan.apply_sweep(cfg, 'num_experts', 2)
    assert tuple(out['backbone']['adapter']['experts']) == ('spatial',
                                                            'context')
    assert len(out['neck']['experts']) == 2
    with pytest.raises(ValueError, match='num_experts'):
        plan.apply_sweep(cfg, 'num_experts', 0)


def test_num_experts_builds_model_with_that_many_experts():
    cfg = plan.apply_sweep(_model_cfg(TINY), 'num_experts', 2)
    model = subjects.build_subject(cfg, 'sera')
    routers = dict(model.routers())
    assert routers
    for name, router in routers.items():
        assert len(router.expert_names) == 2, name
    bare = subjects.build_subject(cfg, 'bare')
    assert len(bare.backbone.adapters) == 0


def test_input_size_and_parse_sweep():
    cfg = plan.apply_sweep(_model_cfg(VITB), 'input_size', 320)
    assert tuple(cfg['data_preprocessor']['size']) == (320, 320)
    with pytest.raises(ValueError, match='patch size'):
        plan.apply_sweep(_model_cfg(VITB), 'input_size', 100)
    assert plan.parse_sweep('batch=1,2, 4') == ('batch', [1, 2, 4])
    with pytest.raises(ValueError, match='--sweep key'):
        plan.parse_sweep('depth=1,2')
    with pytest.raises(ValueError, match='integers'):
        plan.parse_sweep('batch=1,x')


# ------------------------------------------------------------ planning
BASE = dict(device='cpu', threads=1, amp=False, channels_last=False,
            size=64, runs=3, warmup=1, imports=[])


def test_plan_jobs_both_subjects_sweeps_and_the_paired_job():
    cfg = _model_cfg(TINY)
    jobs = plan.plan_jobs(BASE, cfg, [('input_size', [32, 96]),
                                      ('batch', [4])],
                          batch_size=2, throughput_batch=8, memory_steps=3)
    assert [tag for tag, _ in jobs] == [
        ('sera', ), ('bare', ), ('input_size', 32), ('input_size', 96),
        ('batch', 4), ('paired', )]
    specs = dict(jobs)
    for subject in ('sera', 'bare'):
        s = specs[(subject, )]
        assert (s['subject'], s['latency_batch'], s['throughput_batch'],
                s['train_batch'], s['memory_steps'], s['flops'],
                s['params'], s['size']) == (subject, 1, 8, 2, 3, True, True,
                                            64)
    small = specs[('input_size', 32)]
    assert (small['subject'], small['size'], small['latency_batch'],
            small['train_batch'], small['throughput_batch'], small['flops'],
            small['params']) == ('sera', 32, 1, 2, 0, False, False)
    assert tuple(small['cfg_model']['data_preprocessor']['size']) == (32, 32)
    batch = specs[('batch', 4)]
    assert (batch['size'], batch['latency_batch'], batch['train_batch']) == (
        64, 4, 4)
    assert batch['cfg_model'] == cfg
    assert specs[('paired', )]['latency_batch'] == 1
    assert 'subject' not in specs[('paired', )]


def test_plan_jobs_without_training_flops_or_pairs():
    jobs = plan.plan_jobs(BASE, _model_cfg(TINY), [('batch', [1, 2])],
                          batch_size=2, throughput_batch=0, skip_train=True,
                          flops=False, paired=False)
    assert [tag for tag, _ in jobs] == [('sera', ), ('bare', ), ('batch', 1),
                                        ('batch', 2)]
    assert all(spec['train_batch'] == 0 for _, spec in jobs)
    assert not any(spec['flops'] for _, spec in jobs)
    assert dict(jobs)[('sera', )]['throughput_batch'] == 0


# ------------------------------------------------------------ statistics
def test_ratios_spread_and_pair_ratios():
    assert stats.ratio(3.0, 2.0) == 1.5
    for a, b in ((None, 1.0), (1.0, None), (1.0, 0.0), (float('nan'), 1.0),
                 (1.0, float('inf'))):
        assert stats.ratio(a, b) is None
    assert stats.spread([3.0, 1.0, 2.0, 10.0]) == dict(min=1.0, median=2.5,
                                                       max=10.0)
    assert stats.pair_ratios([2.0, 9.0, 4.0], [1.0, 3.0, 4.0]) == [2.0, 3.0,
                                                                   1.0]
    assert stats.median([2.0, 3.0, 1.0]) == 2.0


def test_peak_memory_sees_an_allocation():
    import torch
    with measure.PeakMemory('cpu') as mem:
        x = torch.ones(16 * 1024 * 1024 // 4)  # 16 MB
        x.add_(1)
    del x
    assert mem.peak >= 8 * 1024 * 1024


def test_time_runs_takes_the_median_after_the_warmup():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.02 if len(calls) == 1 else 0.001)  # slow first call

    median, times = measure.time_runs(fn, runs=3, warmup=1)
    assert len(calls) == 4 and len(times) == 3
    assert median == statistics.median(times) and max(times) < 0.02
    with pytest.raises(ValueError, match='runs must be >= 1'):
        measure.time_runs(fn, runs=0, warmup=0)


# ------------------------------------------------------------ reports
MB = 1024.0 ** 2
SERA = dict(subject='sera', latency_s=0.050, throughput_ips=40.0,
            train_s=0.200, latency_mem=30 * MB, train_mem=90 * MB,
            ready_rss=500 * MB, max_rss=700 * MB, flops=3.0e9,
            params_total=5_000_000, params_trainable=2_000_000,
            backbone_fraction=0.1, flops_note='ops not counted: aten::x')
BARE = dict(subject='bare', latency_s=0.020, throughput_ips=100.0,
            train_s=0.080, latency_mem=10 * MB, train_mem=30 * MB,
            ready_rss=400 * MB, max_rss=600 * MB, flops=2.0e9,
            params_total=4_000_000, params_trainable=1_000_000,
            backbone_fraction=0.05)
SWEEP = {32: dict(latency_s=0.010, train_s=0.030, latency_mem=4 * MB),
         96: dict(latency_s=0.090, train_s=0.300, latency_mem=40 * MB)}


def test_reports_hold_the_measured_numbers(tmp_path, monkeypatch):
    """The whole command line on given figures: benchmark.csv and .md
    carry them in the reported units, with SERA / bare ratios; sweeps get
    their own table; isolation 'none' drops the process-wide figures."""
    seen = {}

    def fake_run_jobs(jobs, isolation='process', progress=True):
        seen['tags'] = [tag for tag, _ in jobs]
        seen['isolation'] = isolation
        out = {('sera', ): dict(SERA), ('bare', ): dict(BARE),
               ('paired', ): dict(sera_s=0.048, bare_s=0.021, ratio=2.25,
                                  ratios=[2.0, 2.25, 2.5])}
        for v, res in SWEEP.items():
            out[('input_size', v)] = dict(res)
        return out

    monkeypatch.setattr(bench_run, 'run_jobs', fake_run_jobs)
    out = tmp_path / 'bench'
    result = cli.main([TINY, '--batch-size', '4', '--throughput-batch', '8',
                       '--sweep', 'input_size=32,96', '--isolation', 'none',
                       '--input-size', '64', '--out-dir', str(out)])
    assert seen == dict(tags=[('sera', ), ('bare', ), ('input_size', 32),
                              ('input_size', 96), ('paired', )],
                        isolation='none')
    assert result['paths']['csv'] == str(out / 'benchmark.csv')
    rows = list(csv.DictReader(open(out / 'benchmark.csv')))
    main = {r['metric']: r for r in rows if r['section'] == 'main'}
    expected = {  # metric: (unit, sera, bare)
        'latency, batch 1': ('ms', 50.0, 20.0),
        'latency, batch 1, interleaved runs': ('ms', 48.0, 21.0),
        'throughput, batch 8': ('img/s', 40.0, 100.0),
        'train step, batch 4': ('ms', 200.0, 80.0),
        'peak memory increase, inference batch 1': ('MB', 30.0, 10.0),
        'peak memory increase, train step batch 4': ('MB', 90.0, 30.0),
        'FLOPs, forward batch 1': ('GFLOPs', 3.0, 2.0),
        'parameters, total': ('M', 5.0, 4.0),
        'parameters, trainable': ('M', 2.0, 1.0),
        'trainable share of the encoders': ('%', 10.0, 5.0),
    }
    assert set(main) == set(expected)  # process figures dropped
    for metric, (unit, sera, bare) in expected.items():
        r = main[metric]
        assert r['unit'] == unit, metric
        assert float(r['sera']) == pytest.approx(sera), metric
        assert float(r['bare']) == pytest.approx(bare), metric
        want = 2.25 if 'interleaved' in metric else sera / bare
        assert float(r['ratio']) == pytest.approx(want, rel=1e-5), metric
    assert [r['metric'] for r in rows if r['section'] == 'main'][:2] == [
        'latency, batch 1', 'latency, batch 1, interleaved runs']
    sweep = {(r['setting'], r['metric']): float(r['sera'])
             for r in rows if r['section'] == 'sweep:input_size'}
    assert sweep == pytest.approx({
        ('32', 'latency'): 10.0, ('32', 'train step'): 30.0,
        ('32', 'peak memory increase, inference'): 4.0,
        ('96', 'latency'): 90.0, ('96', 'train step'): 300.0,
        ('96', 'peak memory increase, inference'): 40.0})

    md = (out / 'benchmark.md').read_text().splitlines()
    assert '| latency, batch 1 (ms) | 50.00 | 20.00 | 2.50x |' in md
    assert '| throughput, batch 8 (img/s) | 40.00 | 100.0 | 0.40x |' in md
    assert '| parameters, trainable (M) | 2.00 | 1.00 | 2.00x |' in md
    assert '- FLOPs SERA: ops not counted: aten::x' in md
    head = md.index('## Sweep: input_size')
    assert md[head + 2:head + 6] == [
        '| input_size | latency (ms) | peak memory increase, inference (MB)'
        ' | train step (ms) |', '| --- | ---: | ---: | ---: |',
        '| 32 | 10.00 | 4.00 | 30.00 |', '| 96 | 90.00 | 40.00 | 300.0 |']
    assert (out / 'benchmark.png').stat().st_size > 0


def test_main_rows_and_memory_step_labels():
    rows = report.main_rows(dict(train_rss_first=100 * MB,
                                 train_rss_growth=5 * MB),
                            dict(train_rss_first=80 * MB), 2, 0, 3)
    by = {r['metric']: r for r in rows}
    assert set(by) == {'process memory after training step 1 (new batch '
                       'each step)', 'growth from training step 2 to 3'}
    first = by['process memory after training step 1 (new batch each step)']
    assert (first['sera'], first['bare']) == pytest.approx((100.0, 80.0))
    assert first['ratio'] == pytest.approx(1.25)
    growth = by['growth from training step 2 to 3']
    assert growth['bare'] is None and growth['ratio'] is None


def test_benchmark_tool_measures_what_it_reports(tmp_path):
    """A real (tiny) run: the CSV holds the measured medians, the ratios
    are SERA / bare, the interleaved ratio is the median of its pairs."""
    tool = _load_tool()
    out = tmp_path / 'bench'
    result = tool.main([
        TINY, '--runs', '2', '--warmup', '0', '--throughput-batch', '0',
        '--skip-train', '--no-flops', '--threads', '1', '--input-size',
        '64', '--sweep', 'batch=1,2', '--isolation', 'none', '--out-dir',
        str(out)])
    res = result['results']
    rows = list(csv.DictReader(open(out / 'benchmark.csv')))
    main = {r['metric']: r for r in rows if r['section'] == 'main'}
    lat = main['latency, batch 1']
    assert float(lat['sera']) == pytest.approx(
        res[('sera', )]['latency_s'] * 1e3, rel=1e-5)
    assert float(lat['bare']) == pytest.approx(
        res[('bare', )]['latency_s'] * 1e3, rel=1e-5)
    assert float(lat['ratio']) == pytest.approx(
        float(lat['sera']) / float(lat['bare']), rel=1e-4)
    paired = res[('paired', )]
    assert len(paired['ratios']) == 2
    assert paired['ratio'] == statistics.median(paired['ratios'])
    assert float(main['latency, batch 1, interleaved runs']['ratio']) == \
        pytest.approx(paired['ratio'], rel=1e-4)
    # SERA adds the adapters, the neck and the head to the encoders
    params = main['parameters, total']
    assert float(params['sera']) > float(params['bare'])
    sweep = {r['setting']: float(r['sera']) for r in rows
             if r['section'] == 'sweep:batch' and r['metric'] == 'latency'}
    assert sweep == pytest.approx({
        str(b): res[('batch', b)]['latency_s'] * 1e3 for b in (1, 2)},
        rel=1e-5)
    assert not any('train step' in r['metric'] for r in rows)  # skipped


def test_script_answers_from_another_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'),
         '--help'], cwd=str(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '--compare-config' in proc.stdout


def test_no_class_shadows_an_mmengine_name():
    import importlib
    import pkgutil

    import mmengine
    names = set()
    for sub in ('runner', 'hooks', 'model', 'structures', 'config',
                'evaluator', 'logging', 'optim', 'dataset', 'registry',
                'visualization'):
        module = importlib.import_module(f'mmengine.{sub}')
        names |= {n for n, v in vars(module).items() if inspect.isclass(v)}
    names |= {n for n, v in vars(mmengine).items() if inspect.isclass(v)}
    assert 'Runner' in names
    ours = {}
    for package in ('benchmark', 'ablations'):
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            module = importlib.import_module(f'{package}.{info.name}')
            for n, v in vars(module).items():
                if inspect.isclass(v) and v.__module__ == module.__name__:
                    ours[n] = module.__name__
    assert 'StepBuilder' in ours and 'RunSpec' in ours
    assert not {n: m for n, m in ours.items() if n in names}


# ------------------------------------------------------------ measuring
def test_measure_paired_alternates_and_takes_median_ratio(monkeypatch):
    calls = []
    cost = dict(sera=0.003, bare=0.001)

    class FakeSteps:

        def __init__(self, model, *args):
            self.subject = model

        def infer(self, batch, size):
            def step():
                calls.append(self.subject)
                time.sleep(cost[self.subject])
            return step

    monkeypatch.setattr(bench_run, 'build_subject', lambda cfg, s, d: s)
    monkeypatch.setattr(bench_run, 'StepBuilder', FakeSteps)
    res = bench_run.measure_paired(
        dict(cfg_model={}, size=32, runs=4, warmup=1, latency_batch=1))
    # one warm-up pair, then pairs whose first subject alternates
    assert calls == ['sera', 'bare', 'sera', 'bare', 'bare', 'sera',
                     'sera', 'bare', 'bare', 'sera']
    assert len(res['ratios']) == 4
    assert res['ratio'] == statistics.median(res['ratios'])
    assert res['sera_s'] > res['bare_s'] and res['ratio'] > 1.5
    with pytest.raises(ValueError, match='runs must be >= 1'):
        bench_run.measure_paired(dict(cfg_model={}, size=32, runs=0,
                                      warmup=0))


def test_measure_isolated_runs_in_child_process():
    import os
    cfg = _model_cfg(TINY)
    res = bench_run.run_isolated(_child_pid_and_measure, dict(
        cfg_model=cfg, subject='bare', device='cpu', threads=1,
        size=64, latency_batch=1, throughput_batch=0, train_batch=0,
        runs=1, warmup=0, flops=False, params=True))
    assert res['pid'] != os.getpid()
    assert res['max_rss'] >= res['ready_rss'] > 0
    assert res['params_trainable'] < res['params_total']
    assert set(res) >= {'latency_s', 'latency_mem'}


def _child_pid_and_measure(spec):
    import os
    return dict(bench_run.measure(spec), pid=os.getpid())


def test_training_step_profile_by_part(tmp_path):
    cfg = Config.fromfile(TINY)
    runner = subjects.StepBuilder(subjects.build_subject(
        cfg.model.to_dict(), 'sera'))
    before = runner.model.neck.forward
    prof = profiling.profile_train_step(runner, batch=2, size=64, runs=2,
                                        warmup=1)
    for part in ('text_encoder', 'backbone', 'neck', 'decode_head',
                 'backbone.adapters.1', 'backbone without adapters'):
        assert f'{part}/forward' in prof, part
    # nested parts: the backbone's time holds its adapters'
    assert prof['backbone/forward']['median'] >= \
        prof['backbone.adapters.1/forward']['median']
    assert prof['step']['max'] >= prof['forward (loss)']['min']
    assert 'forward' not in runner.model.neck.__dict__  # wrappers removed
    assert runner.model.neck.forward == before
    text = report.format_profile(prof, 'tiny', 'setup')
    neck = prof['neck/forward']
    assert (f'| neck | {neck["median"]:.1f} ({neck["min"]:.1f}-'
            f'{neck["max"]:.1f}) |') in text


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
    top = ops['rows'][0]
    assert f'| `{top["op"]}` |' in md and f'{top["self_ms"]:.1f}' in md
    assert (out / 'profile.md').exists()


def test_memory_over_steps_records_every_step_on_new_batches(monkeypatch):
    """--memory-steps: RSS after each of N training steps of one optimizer,
    each step on a new batch (other expressions and images)."""
    cfg = plan.set_input_size(_model_cfg(TINY), 64)
    runner = subjects.StepBuilder(subjects.build_subject(cfg, 'sera'), 'cpu')
    seen = []
    real = subjects.synthetic_batch

    def spy(batch, size, with_gt=False, seed=0):
        out = real(batch, size, with_gt, seed)
        seen.append(([s.metainfo['text'] for s in out['data_samples']],
                     out['inputs'][0].clone()))
        return out

    monkeypatch.setattr(subjects, 'synthetic_batch', spy)
    res = measure.memory_over_steps(runner, 2, 64, 3)
    assert len(res['train_rss_steps']) == 3
    assert res['train_rss_first'] == res['train_rss_steps'][0]
    assert res['train_rss_last'] == res['train_rss_steps'][-1]
    assert res['train_rss_growth'] == (res['train_rss_steps'][2] -
                                       res['train_rss_steps'][1])
    # the first batch, then a new one per step (and for the tensor peak)
    assert len(seen) == 4
    assert seen[0][0] != seen[1][0] != seen[2][0] != seen[3][0]
    held = measure.storage_bytes(measure.long_lived_tensors(runner.model))
    assert res['train_tensor_peak'] > held
    # the profiled step starts without gradients (their frees would be
    # invisible to the profiler and count twice)
    seen_grads = []
    real_peak = measure.tensor_peak_of

    def spy_peak(fn, long_lived, device_type='cpu'):
        seen_grads.append([p.grad for p in runner.model.parameters()
                           if p.requires_grad])
        return real_peak(fn, long_lived, device_type)

    monkeypatch.setattr(measure, 'tensor_peak_of', spy_peak)
    measure.memory_over_steps(runner, 2, 64, 2)
    assert seen_grads and seen_grads[0]
    assert all(g is None for g in seen_grads[0])
    # the process peak is read before the profiled step
    assert 0 < res['max_rss'] <= measure.max_rss_bytes()
    assert not bool((seen[0][1] == seen[1][1]).all())
    with pytest.raises(ValueError, match='>= 2'):
        measure.memory_over_steps(runner, 2, 64, 1)
    with pytest.raises(SystemExit):
        cli.parse_args([TINY, '--memory-steps', '1'])


def test_compare_times_two_configs_in_alternation(tmp_path, monkeypatch):
    """--compare-options: a (the config) and b (config + options) are timed
    in alternating pairs in one process; compare.md has min/median/max and
    the per-pair ratio b / a."""
    order = []
    real_steps = subjects.StepBuilder

    class Tagged(real_steps):
        def train_step(self, batch, size, vary=False):
            step = super().train_step(batch, size, vary)
            tag = self.model.decode_head.channels

            def tagged():
                order.append(tag)
                return step()
            return tagged

    monkeypatch.setattr(bench_run, 'StepBuilder', Tagged)
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
        assert res[key]['min'] <= res[key]['median'] <= res[key]['max']
    # warm-up a b, then pairs a b | b a | a b | b a
    a, b = channels, channels * 2
    assert order == [a, b, a, b, b, a, a, b, b, a]
    assert set(res['first']) == {'a', 'b'}
    md = (out / 'compare.md').read_text()
    assert (f'| b / a, per pair | {min(res["ratios"]):.3f} | '
            f'{res["ratio"]:.3f} | {max(res["ratios"]):.3f} |') in md
    assert f'channels={channels * 2}' in md and 'First call' in md
    with pytest.raises(ValueError, match='kind'):
        bench_run.measure_compare(dict(cfg_models={}, kind='nope', runs=1,
                                       warmup=0))


def test_compare_amp_channels_last_compile_change_only_b(
        tmp_path, monkeypatch):
    """--compare-amp / --compare-channels-last / --compare-compile: the
    same config in both slots, b under autocast, in channels-last and
    compiled, a as configured (compiling itself is tested in
    test_sera_adapter.py; the config key in test_tools.py)."""
    seen = []
    real_steps = subjects.StepBuilder

    class Recording(real_steps):
        def __init__(self, model, device='cpu', amp=False,
                     channels_last=False, compile=False,
                     optim_wrapper=None):
            super().__init__(model, device, amp, channels_last,
                             optim_wrapper=optim_wrapper)
            seen.append((amp, channels_last, compile))

    monkeypatch.setattr(bench_run, 'StepBuilder', Recording)
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


def test_training_steps_update_through_the_configs_optimizer(
        tmp_path, monkeypatch):
    """The training step builds the optimizer as training does (the
    config's optim_wrapper through the summary constructor: groups with
    equal options merged); --compare-options can change it for b only."""
    built = []
    real_steps = subjects.StepBuilder

    class Recording(real_steps):
        def optimizer(self):
            optimizer, update = super().optimizer()
            built.append(len(optimizer.param_groups))
            return optimizer, update

    monkeypatch.setattr(bench_run, 'StepBuilder', Recording)
    tool = _load_tool()
    cfg = Config.fromfile(TINY)
    tool.main([
        TINY,
        '--cfg-options', 'optim_wrapper.paramwise_cfg.norm_decay_mult=0.',
        '--compare-options', 'optim_wrapper.merge_param_groups=False',
        '--runs', '2', '--warmup', '0', '--batch-size', '2', '--threads',
        '1', '--isolation', 'none', '--input-size', '64', '--out-dir',
        str(tmp_path / 'cmp')])
    merged, per_tensor = built
    # mmengine's paramwise_cfg: one group per tensor; merged: one per
    # option set (norms without decay, the rest with it)
    assert merged == 2
    model = subjects.build_subject(cfg.model.to_dict(), "sera")
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert per_tensor == trainable


def test_project_config_modules_are_imported_for_the_benchmark():
    """A project config registers its parts through custom_imports; the
    benchmark imports them (in the measuring process too) so the model
    builds."""
    project = osp.join(ROOT, 'projects', 'etris_sera', 'configs',
                       'etris_tiny_synthetic.py')
    cfgs = [Config.fromfile(TINY), Config.fromfile(project)]
    names = plan.config_imports(*cfgs)
    assert 'sera_mm.plugin' in names and any(
        n.startswith('projects.etris_sera') for n in names)
    assert len(names) == len(set(names))
    plan.import_config_modules(names)
    from sera_mm.registry import MODELS
    assert MODELS.get('ETRISBridge') is not None
    with pytest.raises(ModuleNotFoundError):
        plan.import_config_modules(['no_such_module_xyz'])


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


@pytest.mark.parametrize('choice', ['config', 'default'])
def test_measuring_processes_set_malloc_as_training_does(
        tmp_path, monkeypatch, choice):
    """The jobs carry the config's env_cfg.malloc (training's allocator
    settings) unless --malloc default; setup_process applies it."""
    from mmengine.config import Config
    seen = {}

    def fake_run_jobs(jobs, isolation='process', progress=True):
        seen['malloc'] = [spec.get('malloc') for _, spec in jobs]
        return {('sera', ): dict(SERA), ('bare', ): dict(BARE)}

    monkeypatch.setattr(bench_run, 'run_jobs', fake_run_jobs)
    cli.main([TINY, '--throughput-batch', '0', '--no-paired', '--no-flops',
              '--skip-train', '--input-size', '64', '--malloc', choice,
              '--out-dir', str(tmp_path / 'b')])
    want = Config.fromfile(TINY).env_cfg.malloc.to_dict()
    assert want  # the shipped runtime tunes malloc
    assert seen['malloc'] == [want if choice == 'config' else None] * 2
    applied = []
    monkeypatch.setattr('sera_mm.utils.allocator.apply_malloc_cfg',
                        applied.append)
    bench_run.setup_process(dict(malloc=want))
    assert applied == [want]


def test_tensor_peak_counts_live_tensors_not_the_heap():
    """The peak of live tensors in a call: what was alive before plus the
    largest running sum of the call's allocations and frees."""
    import torch
    held = [torch.zeros(1 << 20), torch.zeros(1 << 18)]  # 4 MiB + 1 MiB
    view = held[0][:10]  # same storage: counted once

    def fn():
        a = torch.ones(2 << 20)  # 8 MiB
        b = torch.ones(1 << 20)  # + 4 MiB while a lives: 12 MiB
        del a, b
        c = torch.ones(1 << 20)  # 4 MiB after both are freed
        return float(c[0])

    peak = measure.tensor_peak_of(fn, held + [view, None])
    assert measure.storage_bytes(held + [view]) == 5 * MB
    assert 17 * MB <= peak < 17.5 * MB


def test_profile_sets_malloc_and_threads_as_training_does(tmp_path,
                                                          monkeypatch):
    """--profile runs in this process: it applies the config's malloc and
    the thread count before building, and names the malloc in its setup."""
    from mmengine.config import Config
    applied = []
    monkeypatch.setattr('sera_mm.utils.allocator.apply_malloc_cfg',
                        applied.append)

    def fake_profile(runner, batch, size, runs, warmup):
        return dict(parts={}, step={})

    monkeypatch.setattr(cli, 'profile_train_step', fake_profile)
    monkeypatch.setattr(cli, 'format_profile',
                        lambda result, name, setup: setup)
    out = tmp_path / 'p'
    cli.main([TINY, '--profile', '--input-size', '64', '--threads', '1',
              '--out-dir', str(out)])
    want = Config.fromfile(TINY).env_cfg.malloc.to_dict()
    assert applied == [want]
    assert f'malloc {want}' in (out / 'profile.md').read_text()
    applied.clear()
    cli.main([TINY, '--profile', '--input-size', '64', '--threads', '1',
              '--malloc', 'default', '--out-dir', str(out)])
    assert applied == [None]
    assert 'malloc glibc defaults' in (out / 'profile.md').read_text()
