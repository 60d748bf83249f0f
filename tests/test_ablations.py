"""Ablation configs (configs/sera/ablations) and their runner (the package
tools/analysis/ablations behind tools/analysis/run_ablations.py)."""
import csv
import glob
import importlib.util
import json
import math
import os
import os.path as osp
import shlex
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmengine.config import Config  # noqa: E402

from sera_mm.models.routers import ExpertRouter  # noqa: E402
from sera_mm.structures import TextFeatures  # noqa
from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # no_fusion imports projects.cris_sera.cris_sera
    sys.path.insert(0, ROOT)
register_all_modules()
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
from ablations import cli, compare, plan, records, report, stats  # noqa
from ablations import run as ab_run  # noqa: E402
from ablations import provenance, summary  # noqa: E402

ABL_DIR = osp.join(ROOT, 'configs', 'sera', 'ablations')
MAIN_CFG = osp.join(ROOT, 'configs', 'sera',
                    'sera_mnv2-minilm_synthetic_600it.py')
ADAPTER_EXPERTS = ('spatial', 'context', 'boundary', 'semantic')
#: Every ablation config (each must keep the main config's schedule).
ROWS = sorted(osp.splitext(osp.basename(p))[0]
              for p in glob.glob(osp.join(ABL_DIR, '*.py')))
#: Rows that also change these top-level keys (beside the model).
EXTRA_KEYS = {'routing_specialise': {'optim_wrapper', 'custom_hooks'}}
_CFGS = {}
_MODELS = {}


def _cfg(row: str) -> Config:
    if row not in _CFGS:
        path = MAIN_CFG if row == 'main' else osp.join(ABL_DIR, row + '.py')
        _CFGS[row] = Config.fromfile(path)
    return _CFGS[row]


def _model(row: str) -> nn.Module:
    if row not in _MODELS:
        _MODELS[row] = MODELS.build(random_init_cfg(_cfg(row).model))
    return _MODELS[row]


def _routers(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, ExpertRouter)]


def _tool_module(name):
    """A script of tools/analysis/ as a module."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', 'analysis', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------- configs
@pytest.mark.parametrize('row', ROWS)
def test_config_keeps_schedule_seed_and_data(row):
    """Only the model (and, for no_fusion, the imports) differ from the
    main config."""
    main = _cfg('main').to_dict()
    cfg = _cfg(row).to_dict()
    ignore = {'model', 'custom_imports'} | EXTRA_KEYS.get(row, set())
    assert set(cfg) - ignore == set(main) - ignore
    for key in set(main) - ignore:
        assert cfg[key] == main[key], key
    assert cfg['randomness']['seed'] == main['randomness']['seed']
    assert cfg['train_cfg']['max_iters'] == main['train_cfg']['max_iters']
    # same text encoder / data preprocessor / loss in every row
    assert cfg['model']['text_encoder'] == main['model']['text_encoder'] \
        or row in ('tune_adapters_only', 'tune_norm_bias', 'tune_full')
    assert cfg['model']['data_preprocessor'] == \
        main['model']['data_preprocessor']


@pytest.mark.parametrize('row', ROWS)
def test_config_builds(row):
    model = _model(row)
    assert type(model).__name__ == 'SERASegmentor'
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_train > 0
    # text encoder frozen in every row
    assert not any(p.requires_grad for p in model.text_encoder.parameters())


def test_full_is_the_main_model():
    full, main = _model('full'), _model('main')
    assert [(n, p.shape, p.requires_grad) for n, p in full.named_parameters()
            ] == [(n, p.shape, p.requires_grad)
                  for n, p in main.named_parameters()]
    assert type(full.neck).__name__ == 'SERAFusion'
    assert sorted(full.backbone.adapters.keys()) == ['10', '13', '16']
    routers = _routers(full)
    assert len(routers) == 3 + 3  # 3 adapters + 3 neck levels
    assert all(r.mode == 'learned' and r.top_k is None for r in routers)
    for adapter in full.backbone.adapters.values():
        assert adapter.expert_names == list(ADAPTER_EXPERTS)


def test_routing_uniform_every_router():
    model = _model('routing_uniform')
    routers = _routers(model)
    assert len(routers) == 6
    assert all(r.mode == 'uniform' for r in routers)
    assert all(len(list(r.parameters())) == 0 for r in routers)
    assert len(_routers(model.backbone)) == 3
    assert len(_routers(model.neck)) == 3
    w = routers[0](torch.randn(2, routers[0].in_channels, 4, 4),
                   torch.randn(2, routers[0].text_channels))
    assert torch.allclose(w, torch.full_like(w, 1 / routers[0].num_experts))


def test_routing_top1_every_router():
    model = _model('routing_top1')
    routers = _routers(model)
    assert len(routers) == 6
    assert all(r.top_k == 1 and r.mode == 'learned' for r in routers)
    r = routers[0]
    w = r(torch.randn(3, r.in_channels, 4, 4), torch.randn(3, r.text_channels))
    assert ((w > 0).sum(dim=1) == 1).all()


def _routing(row):
    routers = _routers(_model(row))
    assert len(routers) == 6
    return routers


def test_routing_top2_and_noisy_top2_every_router():
    for r in _routing('routing_top2'):
        assert r.top_k == 2 and r.gate_mode == 'renorm' and r.noise is None
    for r in _routing('routing_noisy_top2'):
        assert r.top_k == 2 and r.noise == 'learned'
        assert hasattr(r, 'noise_proj')


def test_routing_top1_runs_one_expert_per_sample():
    model = _model('routing_top1')
    adapter = model.backbone.adapters['10']
    calls = []
    hooks = [e.register_forward_hook(
        lambda m, i, o, k=k: calls.append((k, i[0].shape[0])))
        for k, e in enumerate(adapter.experts)]
    try:
        ct = adapter.text_channels
        tokens = torch.randn(5, 9, adapter.in_channels)
        text = TextFeatures(words=torch.randn(5, 4, ct),
                            pad_mask=torch.zeros(5, 4, dtype=torch.bool),
                            sentence=torch.randn(5, ct))
        adapter(tokens, (3, 3), 0, text)
    finally:
        for h in hooks:
            h.remove()
    assert sum(n for _, n in calls) == 5  # each sample ran one expert


def test_routing_per_location_every_router():
    for r in _routing('routing_per_location'):
        assert r.per_location and r.top_k is None


def test_routing_specialise_losses_lr_and_temperature():
    cfg = _cfg('routing_specialise')
    assert cfg.model.assign_loss_weight > 0
    assert cfg.model.balance_loss_weight > _cfg('full').model.get(
        'balance_loss_weight', 0.01)
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert keys['router']['lr_mult'] > 1
    assert 'RouterTemperatureHook' in [h['type'] for h in cfg.custom_hooks]
    model = _model('routing_specialise')
    assert model.aux_loss_weights['assign'] > 0


def test_no_adapter():
    model, full = _model('no_adapter'), _model('full')
    assert len(model.backbone.adapters) == 0
    assert model.backbone.adapter_indices == []
    assert _routers(model.backbone) == []
    assert type(model.neck).__name__ == 'SERAFusion'
    names = {n for n, _ in model.named_parameters()}
    assert names == {n for n, _ in full.named_parameters()
                     if not n.startswith('backbone.adapters.')}


def _logits(model, size=160):
    model.eval()
    b, c_t = 1, model.text_encoder.embed_dim
    text = TextFeatures(
        words=torch.randn(b, 5, c_t),
        pad_mask=torch.zeros(b, 5, dtype=torch.bool),
        sentence=torch.randn(b, c_t))
    with torch.no_grad():
        grids = model.backbone(torch.randn(b, 3, size, size), text)
        fused = model.neck(grids, text)
        return model.decode_head.forward((fused, text))


def test_no_fusion_replaces_the_neck_keeps_resolution():
    model, full = _model('no_fusion'), _model('full')
    assert type(model.neck).__name__ == 'CRISNeck'
    assert _routers(model.neck) == []
    assert len(model.backbone.adapters) == 3  # adapters stay
    assert model.decode_head.num_upsample == \
        full.decode_head.num_upsample + 1
    assert _logits(model).shape == _logits(full).shape


@pytest.mark.parametrize('expert', ADAPTER_EXPERTS)
def test_no_expert(expert):
    model, full = _model(f'no_{expert}'), _model('full')
    rest = [e for e in ADAPTER_EXPERTS if e != expert]
    assert len(model.backbone.adapters) == 3
    for adapter in model.backbone.adapters.values():
        assert adapter.expert_names == rest
        assert len(adapter.experts) == 3
        assert adapter.router.num_experts == 3
        assert adapter.router.expert_names == rest
    # the neck keeps its experts
    assert model.neck.expert_names == full.neck.expert_names
    assert all(r.num_experts == len(full.neck.expert_names)
               for r in model.neck.routers)


def _trainable(module: nn.Module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_tune_adapters_only():
    model = _model('tune_adapters_only')
    assert not any(p.requires_grad
                   for p in model.backbone.encoder.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert all(p.requires_grad for p in model.backbone.adapters.parameters())
    assert all(p.requires_grad for p in model.neck.parameters())
    assert _trainable(model) < _trainable(_model('full'))


def test_tune_norm_bias_matches_main_training():
    model = _model('tune_norm_bias')
    assert _trainable(model) == _trainable(_model('main'))
    features = model.backbone.encoder.features
    for i, block in enumerate(features):
        names = _trainable(block)
        assert bool(names) == (i >= 7), i  # blocks 0-6 frozen outright
        modules = dict(block.named_modules())
        for name in names:
            owner = modules[name.rpartition('.')[0]]
            assert name.endswith('bias') or isinstance(
                owner, nn.modules.batchnorm._BatchNorm), name


def test_tune_full():
    model = _model('tune_full')
    assert all(p.requires_grad for p in model.backbone.encoder.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert _trainable(model) > _trainable(_model('full'))
    model.train()
    bns = [m for m in model.backbone.encoder.modules()
           if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)  # frozen statistics


def test_count_parameters_matches_built_model():
    trainable, total = ab_run.count_parameters(
        osp.join(ABL_DIR, 'no_adapter.py'))
    model = _model('no_adapter')
    assert total == sum(p.numel() for p in model.parameters())
    assert trainable == sum(p.numel() for p in model.parameters()
                            if p.requires_grad)


# ------------------------------------------------------------ planning
SPLITS = ['val', 'testB']


def _metrics(base: float) -> dict:
    """Fake final_metrics.json content with distinct values per key."""
    out = {}
    for k, split in enumerate(SPLITS):
        m = {'mIoU': base + 10 * k, 'oIoU': base + 1 + 10 * k,
             'Prec@0.5': base + 2 + 10 * k, 'Prec@0.6': 0.0,
             'Prec@0.9': base + 3 + 10 * k}
        for j, t in enumerate(summary.EXPR_TYPES):
            m[f'{t}/mIoU'] = base + 4 + j + 10 * k
            m[f'{t}/count'] = 7
        out[split] = m
    return out


def _finish(work_dir, base, params=(100, 1000), wall=(60.0, )):
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'final_metrics.json'), 'w') as f:
        json.dump(_metrics(base), f)
    info = dict(trainable_params=params[0], total_params=params[1],
                attempts=[dict(wall_s=w) for w in wall])
    with open(osp.join(work_dir, 'ablation_run.json'), 'w') as f:
        json.dump(info, f)


def _interrupt(work_dir):
    """A run stopped mid-training: mmengine's ``last_checkpoint`` only."""
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write('iter_500.pth')


def _fake_configs(tmp_path, rows):
    paths = []
    for row in rows:
        p = tmp_path / 'cfgs' / f'{row}.py'
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("_base_ = []\n")
        paths.append(str(p))
    return paths


def test_plan_runs_and_commands(tmp_path):
    cfgs = _fake_configs(tmp_path, ['full', 'no_adapter'])
    runs = plan.plan_runs(cfgs, 'W', seeds=[0, 1, 2], seed_rows=['full'])
    assert [(r.row, r.work_dir, r.seed) for r in runs] == [
        ('full', osp.join('W', 'full_seed0'), 0),
        ('full', osp.join('W', 'full_seed1'), 1),
        ('full', osp.join('W', 'full_seed2'), 2),
        ('no_adapter', osp.join('W', 'no_adapter'), None)]
    runs1 = plan.plan_runs(cfgs, 'W')
    assert [r.work_dir for r in runs1] == [osp.join('W', 'full'),
                                           osp.join('W', 'no_adapter')]
    cmd = plan.train_command(runs[1], SPLITS, ['a.b=1'], resume=True,
                             python='py')
    assert cmd[0] == 'py' and cmd[1] == osp.join(ROOT, 'tools', 'train.py')
    assert cmd[2:] == [cfgs[0], '--work-dir', runs[1].work_dir,
                       '--test-splits', 'val', 'testB', '--resume',
                       '--cfg-options', 'a.b=1', 'randomness.seed=1']
    cmd = plan.train_command(runs[3], ['val'], python='py')
    assert '--resume' not in cmd and '--cfg-options' not in cmd
    with pytest.raises(ValueError, match='distinct'):
        plan.plan_runs(cfgs + cfgs[:1], 'W')
    with pytest.raises(ValueError, match='seeds'):
        plan.plan_runs(cfgs, 'W', seeds=[1, 1])


def test_run_status(tmp_path):
    wd = tmp_path / 'r'
    assert plan.run_status(str(wd)) == 'new'
    _interrupt(str(wd))
    assert plan.run_status(str(wd)) == 'resume'
    (wd / 'final_metrics.json').write_text('{}')
    assert plan.run_status(str(wd)) == 'done'  # metrics win


def _work_root_with_every_state(tmp_path):
    """full seed 0 finished, seed 1 interrupted, seed 2 never started;
    no_adapter finished; no_fusion never started."""
    cfgs = _fake_configs(tmp_path, ['full', 'no_adapter', 'no_fusion'])
    root = tmp_path / 'work'
    _finish(root / 'full_seed0', 50.0)
    _interrupt(str(root / 'full_seed1'))
    _finish(root / 'no_adapter', 40.0)
    runs = plan.plan_runs(cfgs, str(root), seeds=[0, 1, 2])
    return cfgs, root, runs


def test_planner_decides_from_the_work_dirs(tmp_path):
    _, root, runs = _work_root_with_every_state(tmp_path)
    states = {osp.basename(r.work_dir): s for r, s in plan.plan_states(runs)}
    assert states == {'full_seed0': 'done', 'full_seed1': 'resume',
                      'full_seed2': 'new', 'no_adapter': 'done',
                      'no_fusion': 'new'}


def test_dry_run_lists_states_and_commands_and_writes_nothing(
        tmp_path, capsys):
    cfgs, root, _ = _work_root_with_every_state(tmp_path)
    out_dir = tmp_path / 'out'
    rc = cli.main(['--configs', *cfgs, '--work-root', str(root), '--seeds',
                   '0', '1', '2', '--dry-run', '--out', str(out_dir),
                   '--cfg-options', 'train_cfg.max_iters=5'])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    actions = {ln.split()[1]: ln.split(None, 2)[2].strip() for ln in out
               if ln and not ln.startswith(' ') and not ln[0].isdigit()}
    assert actions == {'full_seed0': 'skip (finished)',
                       'full_seed1': 'resume', 'full_seed2': 'run',
                       'no_adapter': 'skip (finished)', 'no_fusion': 'run'}
    cmds = [ln.split() for ln in out if ln.startswith('    ')]
    assert [c[c.index('--work-dir') + 1] for c in cmds] == [
        str(root / 'full_seed1'), str(root / 'full_seed2'),
        str(root / 'no_fusion')]
    assert '--resume' in cmds[0] and 'randomness.seed=1' in cmds[0]
    assert '--resume' not in cmds[1] and 'randomness.seed=2' in cmds[1]
    assert 'train_cfg.max_iters=5' in cmds[2]
    assert not any(c.startswith('randomness') for c in cmds[2])
    assert out[-1] == '5 runs, 2 finished, 3 to go'
    assert not out_dir.exists()  # a dry run writes nothing


def _fake_python(tmp_path, rc=0):
    """An interpreter stand-in that records its arguments and writes
    final_metrics.json into --work-dir (as tools/train.py does)."""
    body = tmp_path / 'fake_python.py'
    body.write_text(
        'import json, os, sys\n'
        'args = sys.argv[1:]\n'
        'wd = args[args.index("--work-dir") + 1]\n'
        'with open(os.path.join(wd, "calls.txt"), "a") as f:\n'
        '    f.write(" ".join(args) + "\\n")\n'
        f'if {rc} == 0:\n'
        '    json.dump({"val": {"mIoU": 12.5}},\n'
        '              open(os.path.join(wd, "final_metrics.json"), "w"))\n'
        f'sys.exit({rc})\n')
    # a shell wrapper, not a ``#!<python>`` line: a shebang cannot hold an
    # interpreter path with a space (a checkout in "my folder/")
    script = tmp_path / 'fake_python'
    script.write_text('#!/bin/sh\n'
                      f'exec {shlex.quote(sys.executable)} '
                      f'{shlex.quote(str(body))} "$@"\n')
    script.chmod(0o755)
    return str(script)


def _calls(work_dir):
    path = osp.join(work_dir, 'calls.txt')
    return open(path).read().splitlines() if osp.isfile(path) else []


def test_main_runs_only_the_unfinished_runs_and_resumes(tmp_path,
                                                        monkeypatch):
    cfgs, root, _ = _work_root_with_every_state(tmp_path)
    monkeypatch.setattr(ab_run, 'count_parameters', lambda c, o=(): (1, 2))
    out = tmp_path / 'out'
    rc = cli.main(['--configs', *cfgs, '--work-root', str(root), '--seeds',
                   '0', '1', '2', '--splits', 'val', '--out', str(out),
                   '--python', _fake_python(tmp_path), '--heartbeat', '5'])
    assert rc == 0
    assert _calls(str(root / 'full_seed0')) == []  # finished: not run
    assert _calls(str(root / 'no_adapter')) == []
    resumed, = _calls(str(root / 'full_seed1'))
    assert '--resume' in resumed.split()
    for new in ('full_seed2', 'no_fusion'):
        call, = _calls(str(root / new))
        assert '--resume' not in call.split()
    # every run is finished now: the table counts them
    table = {r['row']: r for r in csv.DictReader(open(out / 'ablations.csv'))}
    assert (table['full']['done'], table['no_fusion']['done']) == ('3', '1')
    # a second invocation has nothing left to run
    cli.main(['--configs', *cfgs, '--work-root', str(root), '--seeds', '0',
              '1', '2', '--splits', 'val', '--out', str(out), '--python',
              '/nonexistent'])
    assert len(_calls(str(root / 'full_seed2'))) == 1


def test_execute_run_resumes_and_records(tmp_path):
    cfgs = _fake_configs(tmp_path, ['no_adapter'])
    run, = plan.plan_runs(cfgs, str(tmp_path / 'work'))
    _interrupt(run.work_dir)
    counts = []

    def counter(config, options):
        counts.append(config)
        return 7, 70

    rc = ab_run.execute_run(run, ['val'], ['a=1'],
                            python=_fake_python(tmp_path),
                            param_counter=counter, heartbeat=5)
    assert rc == 0
    calls = _calls(run.work_dir)
    assert len(calls) == 1 and '--resume' in calls[0]
    assert calls[0].endswith('--cfg-options a=1')
    info = records.load_run_info(run.work_dir)
    assert info['trainable_params'] == 7 and info['total_params'] == 70
    assert info['attempts'][0]['returncode'] == 0
    assert info['attempts'][0]['resumed'] is True
    assert isinstance(info['attempts'][0]['threads'], int)
    assert info['wall_time_s'] == pytest.approx(info['attempts'][0]['wall_s'])
    # finished: a second call runs nothing
    assert ab_run.execute_run(run, ['val'], python='/nonexistent',
                              param_counter=counter) == 0
    assert len(_calls(run.work_dir)) == 1
    assert counts == [cfgs[0]]


def test_main_goes_on_after_a_failed_run(tmp_path, monkeypatch):
    cfgs = _fake_configs(tmp_path, ['a_row', 'b_row'])
    root, out = tmp_path / 'work', tmp_path / 'out'
    monkeypatch.setattr(ab_run, 'count_parameters', lambda c, o=(): (1, 2))
    rc = cli.main(['--configs', *cfgs, '--work-root', str(root), '--out',
                   str(out), '--splits', 'val', '--python',
                   _fake_python(tmp_path, rc=3), '--heartbeat', '5'])
    assert rc == 1
    for row in ('a_row', 'b_row'):  # both attempted
        info = records.load_run_info(str(root / row))
        assert info['attempts'][-1]['returncode'] == 3
        assert info['trainable_params'] == 1
        assert plan.run_status(str(root / row)) == 'new'
    table = list(csv.DictReader(open(out / 'ablations.csv')))
    assert [(r['row'], r['done']) for r in table] == [('a_row', '0'),
                                                      ('b_row', '0')]


def test_fill_missing_params(tmp_path):
    cfgs = _fake_configs(tmp_path, ['x', 'y'])
    runs = plan.plan_runs(cfgs, str(tmp_path / 'w'))
    os.makedirs(runs[0].work_dir)
    with open(osp.join(runs[0].work_dir, 'final_metrics.json'), 'w') as f:
        json.dump(_metrics(1.0), f)
    calls = []
    ab_run.fill_missing_params(runs, (),
                               lambda c, o: calls.append(c) or (3, 4))
    assert calls == [cfgs[0]]  # y is not finished
    info = records.load_run_info(runs[0].work_dir)
    assert (info['trainable_params'], info['total_params']) == (3, 4)
    ab_run.fill_missing_params(runs, (),
                               lambda c, o: calls.append(c) or (3, 4))
    assert calls == [cfgs[0]]  # recorded once


def test_script_runs_from_another_directory(tmp_path):
    """The thin script finds its package wherever it is called from."""
    cfgs, root, _ = _work_root_with_every_state(tmp_path)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'analysis',
                                  'run_ablations.py'),
         '--configs', *cfgs, '--work-root', str(root), '--seeds', '0', '1',
         '2', '--dry-run'], cwd=str(elsewhere), capture_output=True,
        text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == '5 runs, 2 finished, 3 to go'


# ---------------------------------------------------------------- tables
def test_tables_from_fake_work_dirs(tmp_path):
    rows = ['full', 'no_adapter', 'routing_uniform', 'no_fusion']
    cfgs = _fake_configs(tmp_path, rows)
    root = tmp_path / 'work'
    runs = plan.plan_runs(cfgs, str(root), seeds=[0, 1, 2])
    full_bases = [50.0, 51.0, 53.0]
    for seed, base in enumerate(full_bases):
        _finish(root / f'full_seed{seed}', base, wall=(100.0 + seed, 20.0))
    _finish(root / 'no_adapter', 40.0, params=(50, 900), wall=(30.0, ))
    _finish(root / 'routing_uniform', 51.5, params=(90, 990))
    # no_fusion not run
    md_path, csv_path = report.write_tables(runs, SPLITS,
                                            str(tmp_path / 'out'))

    with open(csv_path) as f:
        table = {r['row']: r for r in csv.DictReader(f)}
    assert list(table) == rows
    mean = statistics.fmean(full_bases)
    std = statistics.stdev(full_bases)
    full = table['full']
    assert full['runs'] == '3' and full['done'] == '3'
    assert full['seeds'] == '0 1 2'
    assert float(full['val/mIoU']) == pytest.approx(mean, abs=1e-4)
    assert float(full['val/mIoU_std']) == pytest.approx(std, abs=1e-4)
    assert float(full['testB/oIoU']) == pytest.approx(mean + 11, abs=1e-4)
    assert float(full['testB/ordinal/mIoU']) == pytest.approx(
        mean + 4 + 3 + 10, abs=1e-4)
    # wall time: sum of attempts per run, mean over seeds, in minutes
    assert float(full['wall_time_min']) == pytest.approx(
        statistics.fmean([120.0, 121.0, 122.0]) / 60, abs=1e-3)
    assert full['trainable_params'] == '100'
    noa = table['no_adapter']
    assert float(noa['val/Prec@0.9']) == pytest.approx(43.0)
    assert float(noa['val/boundary/mIoU']) == pytest.approx(48.0)
    assert noa['val/mIoU_std'] == ''
    assert noa['trainable_params'] == '50'
    assert float(noa['wall_time_min']) == pytest.approx(0.5)
    nf = table['no_fusion']
    assert nf['done'] == '0' and nf['val/mIoU'] == ''

    md = open(md_path).read().splitlines()
    val_rows = md[md.index('## val'):md.index('## testB')]
    full_line, = [ln for ln in val_rows if ln.startswith('| full |')]
    assert full_line.split(' | ')[1:3] == ['3/3', f'{mean:.2f} ± {std:.2f}']
    assert '| no_adapter | 1/1 | 40.00 | 41.00 | 42.00 | 43.00 |' in \
        '\n'.join(val_rows)
    assert '| no_fusion | 0/1 | - |' in '\n'.join(val_rows)
    # seed check: std = 1.53, 2 std = 3.06; no_adapter (-11.33) differs,
    # routing_uniform (-0.17) does not
    line, = [ln for ln in md if ln.startswith('Rows differing')]
    val_part = line.split('val/mIoU')[1].split(';')[0]
    assert val_part == f' (std {std:.2f}): no_adapter ({40.0 - mean:+.2f})'


def test_seed_check_needs_three_seeds(tmp_path):
    cfgs = _fake_configs(tmp_path, ['full', 'no_adapter'])
    root = tmp_path / 'work'
    runs = plan.plan_runs(cfgs, str(root), seeds=[0, 1, 2])
    _finish(root / 'full_seed0', 50.0)
    _finish(root / 'full_seed2', 54.0)
    _finish(root / 'no_adapter', 10.0)
    summaries = summary.summarize(runs, SPLITS)
    assert summaries[0].n_done == 2 and summaries[0].seeds == [0, 2]
    assert summaries[0].values['val/mIoU'] == pytest.approx(
        (52.0, statistics.stdev([50.0, 54.0])))
    lines = summary.significant_differences(summaries, SPLITS)
    assert lines == ['Seed check vs `full`: needs 3 finished seeds, have 2.']


def test_significance_boundary():
    s = summary.RowSummary
    ref = s('full', 'c', 3, 3, values={'val/mIoU': (50.0, 1.0)})
    close = s('a', 'c', 1, 1, values={'val/mIoU': (52.0, None)})  # = 2 std
    far = s('b', 'c', 1, 1, values={'val/mIoU': (47.9, None)})
    line, = summary.significant_differences([ref, close, far], ['val'],
                                            metrics=['mIoU'])
    assert 'b (-2.10)' in line and 'a (' not in line


def test_tables_record_the_commit(tmp_path):
    cfgs = _fake_configs(tmp_path, ['full'])
    root = tmp_path / 'work'
    runs = plan.plan_runs(cfgs, str(root))
    _finish(root / 'full', 50.0)
    info = records.load_run_info(str(root / 'full'))
    info['attempts'][0]['commit'] = 'abcdef0123456789+dirty'
    info['attempts'].append(dict(wall_s=1.0, commit='fedcba9876543210'))
    json.dump(info, open(root / 'full' / 'ablation_run.json', 'w'))
    md_path, csv_path = report.write_tables(runs, ['val'],
                                            str(tmp_path / 'o'))
    assert '| 1.0 | abcdef0+ |' in open(md_path).read()  # first attempt's
    row, = csv.DictReader(open(csv_path))
    assert row['commits'] == 'abcdef0123456789+dirty'
    commit = provenance.git_commit()
    assert commit is None or len(commit.split('+')[0]) == 40


# ------------------------------------------------------------ statistics
def _t975_closed_form(df):
    """Student-t 97.5% quantiles with closed forms: df 1 (Cauchy), 2 and
    4 (Hill 1970)."""
    p = 0.975
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    if df == 4:
        a = 4 * p * (1 - p)
        q = math.cos(math.acos(math.sqrt(a)) / 3) / math.sqrt(a)
        return 2 * math.sqrt(q - 1)
    raise ValueError(df)


@pytest.mark.parametrize('df', [1, 2, 4])
def test_t_quantile_matches_closed_forms(df):
    assert stats.t_quantile(df) == pytest.approx(_t975_closed_form(df),
                                                 rel=1e-9)


def test_t_quantile_beyond_a_table():
    # df 11 lies between the old table's rows, df 40 above them
    assert stats.t_quantile(11) == pytest.approx(2.200985, abs=1e-6)
    assert stats.t_quantile(40) == pytest.approx(2.021075, abs=1e-6)
    normal = statistics.NormalDist().inv_cdf(0.975)
    assert stats.t_quantile(10 ** 7) == pytest.approx(normal, abs=1e-6)
    with pytest.raises(ValueError, match='df'):
        stats.t_quantile(0)


def test_t_interval_of_known_samples():
    # [1, 2, 3]: mean 2, sd 1; [2, 4, 4, 4, 6]: mean 4, sd sqrt(2)
    mean, lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    half = _t975_closed_form(2) * 1.0 / math.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    mean, lo, hi = stats.t_interval([2.0, 4.0, 4.0, 4.0, 6.0])
    half = _t975_closed_form(4) * math.sqrt(2.0) / math.sqrt(5)
    assert (mean, lo, hi) == pytest.approx((4.0, 4.0 - half, 4.0 + half))
    with pytest.raises(ValueError):
        stats.t_interval([1.0])


def _reference_bootstrap(sums, sizes, resamples, seed):
    """Percentile bootstrap of sum(sums) / sum(sizes) over clusters drawn
    with numpy's generator as the module draws them (one block)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = [sum(sums[j] for j in row) / sum(sizes[j] for j in row)
             for row in idx]
    return tuple(np.quantile(means, [0.025, 0.975]))


def test_bootstrap_of_single_values_is_the_percentile_bootstrap():
    values = [0.5, -1.0, 2.0, 3.5, 0.0, 1.0, -2.5, 4.0]
    mean, lo, hi = stats.bootstrap_ci(values, resamples=300, seed=5)
    assert mean == pytest.approx(statistics.fmean(values))
    assert (lo, hi) == pytest.approx(
        _reference_bootstrap(values, [1] * 8, 300, 5), abs=1e-12)
    # each value its own cluster: the same draws, the same interval
    assert stats.cluster_bootstrap_ci(values, list('abcdefgh'), 300,
                                      seed=5) == (mean, lo, hi)
    assert stats.bootstrap_ci([1.5] * 10, 200) == pytest.approx(
        (1.5, 1.5, 1.5))


def test_cluster_bootstrap_of_unequal_clusters_resamples_whole_clusters():
    values = [1.0, 2.0, 3.0, 10.0, -4.0, 0.5, 0.5, 0.5, 7.0]
    clusters = ['a', 'a', 'a', 'b', 'c', 'd', 'd', 'd', 'd']
    sums, sizes = [6.0, 10.0, -4.0, 8.5], [3, 1, 1, 4]
    mean, lo, hi = stats.cluster_bootstrap_ci(values, clusters, 400, seed=2)
    assert mean == pytest.approx(statistics.fmean(values))  # per value
    assert (lo, hi) == pytest.approx(
        _reference_bootstrap(sums, sizes, 400, 2), abs=1e-12)
    with pytest.raises(ValueError, match='cluster ids'):
        stats.cluster_bootstrap_ci(values, clusters[:-1])
    with pytest.raises(ValueError, match='at least one'):
        stats.cluster_bootstrap_ci([], [])


def test_identical_clusters_give_the_bootstrap_of_cluster_means():
    """Clusters of 4 copies of one value: resampling the clusters is
    resampling their means, draw for draw."""
    rng = np.random.default_rng(0)
    means = rng.normal(1.0, 3.0, size=60)
    values = np.repeat(means, 4)
    clusters = np.repeat(np.arange(60), 4)
    clustered = stats.cluster_bootstrap_ci(values, clusters, 1000, seed=7)
    assert clustered == pytest.approx(
        stats.bootstrap_ci(means, 1000, seed=7), abs=1e-9)
    # resampled as if independent, the 240 copies give an interval about
    # sqrt(4) = 2 times too narrow
    naive = stats.bootstrap_ci(values, 1000, seed=7)
    ratio = (clustered[2] - clustered[1]) / (naive[2] - naive[1])
    assert ratio == pytest.approx(2.0, rel=0.15)


def test_equal_size_clusters_give_the_bootstrap_of_cluster_means():
    rng = np.random.default_rng(1)
    values = rng.normal(0.0, 1.0, size=(50, 3))
    clusters = np.repeat(np.arange(50), 3)
    assert stats.cluster_bootstrap_ci(values.ravel(), clusters, 500,
                                      seed=4) == pytest.approx(
        stats.bootstrap_ci(values.mean(1), 500, seed=4), abs=1e-9)


def test_cluster_unit_prefers_images_then_refs():
    rec = records.SampleRecord
    with_images = [rec(0.5, None, '1', '10'), rec(0.2, None, '1', '11')]
    assert stats.cluster_unit(with_images) == 'image'
    refs_only = [rec(0.5, None, None, '10'), rec(0.2, None, '1', '11')]
    assert stats.cluster_unit(refs_only) == 'ref'
    bare = [rec(0.5), rec(0.2, None, None, '11')]
    assert stats.cluster_unit(bare) == 'expression'
    assert stats.cluster_ids(['s1', 's2'], with_images, 'image') == ['1',
                                                                    '1']
    assert stats.cluster_ids(['s1', 's2'], bare, 'expression') == ['s1',
                                                                  's2']


# -------------------------------------------------- paired comparisons
def _per_sample(work_dir, ious, types=None, images=None, refs='index',
                split='val'):
    """per_sample/<split>.csv; ``refs='index'``: one ref per expression,
    None: no ref_id column; ``images``: an image_id column."""
    os.makedirs(osp.join(work_dir, 'per_sample'), exist_ok=True)
    cols = ['sent_id'] + (['image_id'] if images is not None else []) + (
        ['ref_id'] if refs is not None else []) + [
            'expr_type', 'intersection', 'union', 'iou']
    with open(osp.join(work_dir, 'per_sample', f'{split}.csv'), 'w') as f:
        f.write(','.join(cols) + '\n')
        for i, iou in enumerate(ious):
            cells = [str(i)]
            if images is not None:
                cells.append(str(images[i]))
            if refs is not None:
                cells.append(str(i if isinstance(refs, str) else refs[i]))
            cells += ['' if types is None else types[i], '0', '0',
                      repr(float(iou))]
            f.write(','.join(cells) + '\n')


def test_paired_comparisons_pair_seeds_and_types(tmp_path):
    rows = ['full', 'better', 'same', 'single']
    cfgs = _fake_configs(tmp_path, rows)
    root = tmp_path / 'work'
    runs = plan.plan_runs(cfgs, str(root), seeds=[0, 1, 2],
                          seed_rows=['full', 'better', 'same'])
    rng = np.random.default_rng(1)
    n = 300
    types = ['spatial' if i % 2 else 'attribute' for i in range(n)]
    images = [i // 3 for i in range(n)]
    for seed in range(3):
        base = rng.uniform(0.2, 0.8, size=n)
        noise = rng.normal(0, 0.01, size=n)
        _finish(root / f'full_seed{seed}', 50.0)
        _per_sample(str(root / f'full_seed{seed}'), base, types, images)
        # 'better': +10 points on spatial only, every seed
        gain = np.array([0.10 if t == 'spatial' else 0.0 for t in types])
        _finish(root / f'better_seed{seed}', 55.0)
        _per_sample(str(root / f'better_seed{seed}'), base + gain + noise,
                    types, images)
        _finish(root / f'same_seed{seed}', 50.0)
        _per_sample(str(root / f'same_seed{seed}'),
                    base + rng.normal(0, 0.05, size=n), types, images)
    # 'single' runs once, at its config's seed (recorded as 1 here)
    _finish(root / 'single', 50.0)
    _per_sample(str(root / 'single'), np.zeros(n), types, images)
    info = records.load_run_info(str(root / 'single'))
    info['effective_seed'] = 1
    json.dump(info, open(root / 'single' / 'ablation_run.json', 'w'))

    results = compare.paired_comparisons(runs, ['val'], 'full',
                                         resamples=500)
    by = {(r.row, r.group): r for r in results}
    b_all, b_sp, b_at = (by['better', 'all'], by['better', 'spatial'],
                         by['better', 'attribute'])
    assert len(b_all.per_seed) == 3 and b_all.interval == 't'
    assert b_all.clusters == [(0, 'image', 100), (1, 'image', 100),
                              (2, 'image', 100)]
    # the across-seed interval is the t interval of the per-seed means
    assert (b_all.mean, b_all.low, b_all.high) == pytest.approx(
        stats.t_interval([m for _, _, m, _, _ in b_all.per_seed]))
    assert b_all.mean == pytest.approx(5.0, abs=0.3)
    assert b_sp.mean == pytest.approx(10.0, abs=0.3)
    assert b_sp.verdict == 'higher' and b_all.verdict == 'higher'
    assert b_at.verdict == 'n.s.'
    assert by['same', 'all'].verdict == 'n.s.'
    single = by['single', 'all']
    assert [k for k, *_ in single.per_seed] == [1]
    assert single.interval == 'bootstrap' and single.verdict == 'lower'
    assert ('full', 'all') not in by


def test_paired_bootstrap_resamples_images(tmp_path):
    """Three expressions per image, the difference constant within an
    image: the per-seed interval is the bootstrap of the per-image
    differences (the images, not the 3x as many expressions, are the
    sample)."""
    cfgs = _fake_configs(tmp_path, ['full', 'row'])
    root = tmp_path / 'work'
    runs = plan.plan_runs(cfgs, str(root), seeds=[0], seed_rows=['full',
                                                                 'row'])
    rng = np.random.default_rng(3)
    n_images = 40
    per_image = rng.normal(0.02, 0.05, size=n_images)  # IoU difference
    images = np.repeat(np.arange(n_images), 3)
    base = rng.uniform(0.3, 0.6, size=3 * n_images)
    for name, ious in (('full', base), ('row', base + per_image[images])):
        _finish(root / f'{name}_seed0', 50.0)
        _per_sample(str(root / f'{name}_seed0'), ious, images=images,
                    refs=images * 10)
    res, = compare.paired_comparisons(runs, ['val'], 'full', resamples=800)
    assert res.clusters == [(0, 'image', n_images)]
    _, n, mean, lo, hi = res.per_seed[0]
    assert n == 3 * n_images
    assert (mean, lo, hi) == pytest.approx(
        stats.bootstrap_ci(100.0 * per_image, 800, seed=0), abs=1e-6)
    assert (res.low, res.high) == (lo, hi) and res.interval == 'bootstrap'


def _one_paired_report(tmp_path, **per_sample_kw):
    cfgs = _fake_configs(tmp_path, ['full', 'row'])
    root = tmp_path / 'work'
    runs = plan.plan_runs(cfgs, str(root), seeds=[0, 1],
                          seed_rows=['full', 'row'])
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        base = rng.uniform(0.2, 0.8, size=30)
        for name, ious in (('full', base), ('row', base + 0.01 * seed)):
            _finish(root / f'{name}_seed{seed}', 50.0)
            _per_sample(str(root / f'{name}_seed{seed}'), ious,
                        **per_sample_kw)
    results = compare.paired_comparisons(runs, ['val'], 'full', 200)
    md, csv_path = report.write_paired(results, 'full',
                                       str(tmp_path / 'out'), 200)
    return results, open(md).read(), list(csv.DictReader(open(csv_path)))


def test_report_names_the_clusters_and_the_fallbacks(tmp_path):
    images = [i // 2 for i in range(30)]
    res, md, rows = _one_paired_report(tmp_path / 'a', images=images)
    assert res[0].units == ['image']
    assert '2000' not in md and '200 resamples of images' in md
    assert 'not images' not in md and 'single expressions' not in md
    assert rows[0]['clusters'] == '0:image:15 1:image:15'

    res, md, rows = _one_paired_report(tmp_path / 'b')  # refs, no images
    assert res[0].units == ['ref']
    assert '200 resamples of referred objects' in md
    assert '**Clusters: referred objects, not images** (every comparison)' \
        in md
    assert rows[0]['clusters'] == '0:ref:30 1:ref:30'

    res, md, rows = _one_paired_report(tmp_path / 'c', refs=None)
    assert res[0].units == ['expression']
    assert '**Clusters: single expressions** (every comparison)' in md
    assert rows[0]['clusters'] == '0:expression:30 1:expression:30'


def test_paired_report_holds_the_numbers_of_the_comparisons(tmp_path):
    results, md, rows = _one_paired_report(tmp_path, images=[
        i // 3 for i in range(30)])
    r, = results
    assert r.per_seed[0][2] == pytest.approx(0.0)
    assert r.per_seed[1][2] == pytest.approx(1.0)  # +0.01 IoU = 1 point
    line, = [ln for ln in md.splitlines() if ln.startswith('| row | 2 |')]
    cells = [c.strip() for c in line.strip('|').split('|')]
    per = '; '.join(f's{k}: {m:+.2f} [{lo:+.2f}, {hi:+.2f}]'
                    for k, _, m, lo, hi in r.per_seed)
    assert cells == ['row', '2', per,
                     f'{r.mean:+.2f} [{r.low:+.2f}, {r.high:+.2f}]',
                     r.verdict]
    row, = rows
    assert (row['row'], row['split'], row['group'], row['seeds'],
            row['interval']) == ('row', 'val', 'all', '2', 't')
    assert [float(row[k]) for k in ('mean', 'low', 'high')] == pytest.approx(
        [r.mean, r.low, r.high], abs=1e-4)
    assert row['per_seed'].split() == [
        f'{k}:{n}:{m:.4f}:{lo:.4f}:{hi:.4f}'
        for k, n, m, lo, hi in r.per_seed]


def test_paired_report_marks_single_seed_rows_and_types(tmp_path):
    cfgs = _fake_configs(tmp_path, ['full', 'row'])
    root = tmp_path / 'work'
    runs = plan.plan_runs(cfgs, str(root), seeds=[0], seed_rows=['full',
                                                                 'row'])
    types = ['spatial', 'attribute'] * 10
    _finish(root / 'full_seed0', 50.0)
    _per_sample(str(root / 'full_seed0'), [0.5] * 20, types)
    _finish(root / 'row_seed0', 50.0)
    _per_sample(str(root / 'row_seed0'),
                [0.7 if t == 'spatial' else 0.5 for t in types], types)
    results = compare.paired_comparisons(runs, ['val'], 'full', 100)
    md = report.format_paired_md(results, 'full', 100).splitlines()
    r = [x for x in results if x.group == 'all'][0]
    cell = f'{r.mean:+.2f} [{r.low:+.2f}, {r.high:+.2f}]'
    assert r.mean == pytest.approx(10.0) and r.interval == 'bootstrap'
    assert f'| row | 1 | s0: {cell} | {cell} (boot) | {r.verdict} |' in md
    assert '| row | +0.00 [+0.00, +0.00] | +20.00 [+20.00, +20.00] ↑ |' \
        in md  # attribute, spatial
    assert report.format_paired_md([], 'full').rstrip().endswith(
        'No paired runs finished yet.')


def test_long_rows_are_their_short_rows_on_the_2h_schedule():
    """configs/sera/ablations/long/<row>_2h.py: the model of ablation row
    <row>, everything else from the 2-hour main config."""
    long_dir = osp.join(ABL_DIR, 'long')
    two_h = Config.fromfile(osp.join(
        ABL_DIR, '..', 'sera_mnv2-minilm_synthetic_2h.py')).to_dict()
    found = sorted(osp.splitext(p)[0] for p in os.listdir(long_dir)
                   if p.endswith('.py'))
    assert found
    for name in found:
        cfg = Config.fromfile(osp.join(long_dir, name + '.py')).to_dict()
        short = _cfg(name[:-len('_2h')]).to_dict()
        assert cfg['model'] == short['model'], name
        assert cfg['train_cfg']['max_iters'] == 7200
        for key in set(two_h) - {'model'}:
            assert cfg[key] == two_h[key], (name, key)


def test_main_config_has_the_exact_speed_ups():
    """The main job runs with channels-last and the frozen-prefix cache
    (exact up to float rounding); the fast config kept for its recorded
    runs is the same config."""
    main = _cfg('main').to_dict()
    assert main['model']['channels_last'] is True
    assert main['model']['backbone']['prefix_cache'] > 2000  # every image
    assert main['model']['backbone']['frozen_stages'] == 7
    fast = Config.fromfile(osp.join(
        ABL_DIR, '..', 'sera_mnv2-minilm_synthetic_fast.py')).to_dict()
    assert fast == main


def test_val_curve_tabulates_validations_of_resumed_runs(tmp_path):
    vc = _tool_module('val_curve')

    def scalars(run, stamp, records):
        d = tmp_path / run / stamp / 'vis_data'
        d.mkdir(parents=True)
        (d / 'scalars.json').write_text(
            '\n'.join(json.dumps(r) for r in records) + '\n')

    train = dict(loss=0.5, lr=1e-3, step=20)
    # run a: validated at 1200, resumed, validated at 2400
    scalars('a', '20260101_000000', [train, {
        'mIoU': 50.0, 'oIoU': 44.0, 'spatial/mIoU': 40.0, 'step': 1200}])
    scalars('a', '20260101_010000', [{
        'mIoU': 55.5, 'spatial/mIoU': 47.0, 'step': 2400}])
    scalars('b', '20260101_000000', [{
        'mIoU': 49.0, 'spatial/mIoU': 41.0, 'step': 1200}])
    out = vc.main([str(tmp_path / 'a'), str(tmp_path / 'b'), '--out-dir',
                   str(tmp_path / 'out')])
    assert out['curves']['a'] == {1200: {'mIoU': 50.0, 'spatial/mIoU': 40.0},
                                  2400: {'mIoU': 55.5, 'spatial/mIoU': 47.0}}
    md = (tmp_path / 'out' / 'val_curve.md').read_text()
    assert '| 1200 | 50.00 | 49.00 |' in md
    assert '| 2400 | 55.50 |  |' in md
    assert '| 2400 | a | 47.00 |' in md
    assert (tmp_path / 'out' / 'val_curve.png').stat().st_size > 0
    with pytest.raises(ValueError, match='no validation'):
        scalars('c', '20260101_000000', [train])
        vc.main([str(tmp_path / 'c')])
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        (tmp_path / 'empty').mkdir()
        vc.main([str(tmp_path / 'empty')])
    with pytest.raises(ValueError, match='names must differ'):
        vc.main([str(tmp_path / 'a'), str(tmp_path / 'a')])
