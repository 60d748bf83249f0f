"""The optimizer constructor's per-parameter log records stay off the
console (and in the log file), replaced by one summary line; the
constructor merges parameter groups with equal options."""
import copy
import io
import logging
import re
from itertools import count

import pytest
import torch
import torch.nn as nn

from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402

from sera_mm.engine.optim_wrappers import (  # noqa: E402
    PerParameterRecordFilter, SummaryOptimWrapperConstructor,
    merge_param_groups, per_parameter_records_off_console,
    use_summary_constructor)
from sera_mm.utils import register_all_modules  # noqa: E402

register_all_modules()
_names = count()
PER_PARAM = re.compile(r'paramwise_options -- |is skipped since its '
                       r'requires_grad=False')


def _record(msg, level=logging.INFO, args=()):
    return logging.LogRecord('mmengine', level, __file__, 1, msg, args, None)


def test_filter_drops_only_per_parameter_records():
    f = PerParameterRecordFilter()
    dropped = [
        'paramwise_options -- backbone.adapters.1.up.weight:lr=0.0001',
        'paramwise_options -- neck.proj.bias:decay_mult=0.0',
        'backbone.encoder.embeddings.patch_embedding.weight is skipped '
        'since its requires_grad=False',
        'backbone.x is duplicate. It is skipped since bypass_duplicate=True',
    ]
    kept = [
        'Iter(train) [1/4]  lr: 1.0000e-03  loss: 0.9',
        'paramwise_options are given',  # not a per-parameter record
        'the model is skipped since its requires_grad=False and more',
    ]
    for msg in dropped:
        assert f.filter(_record(msg, logging.WARNING)) is False, msg
    for msg in kept:
        assert f.filter(_record(msg)) is True, msg
    # %-style records are matched on their formatted message
    assert f.filter(_record('paramwise_options -- %s:lr=%s',
                            args=('a.weight', 0.1))) is False
    assert f.dropped == len(dropped) + 1


def _logger(tmp_path):
    """A fresh current MMLogger with a log file; its console writes into a
    StringIO."""
    name = f'optim_log_test{next(_names)}'
    log_file = tmp_path / f'{name}.log'
    logger = MMLogger.get_instance(name, logger_name=name,
                                   log_file=str(log_file))
    console = io.StringIO()
    handlers = [h for h in logger.handlers
                if type(h) is logging.StreamHandler]
    assert len(handlers) == 1
    handlers[0].setStream(console)
    return logger, console, log_file


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)  # frozen: 2 tensors
        self.backbone.requires_grad_(False)
        self.neck = nn.Linear(4, 3)
        self.head = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))


def test_constructor_logs_a_summary_and_keeps_details_in_the_file(tmp_path):
    logger, console, log_file = _logger(tmp_path)
    cfg = dict(
        constructor='SummaryOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
        paramwise_cfg=dict(custom_keys={
            'neck': dict(lr_mult=0.1),
            'head.1': dict(decay_mult=0.0)}))
    model = _Model()
    wrapper = build_optim_wrapper(model, cfg)
    for handler in logger.handlers:
        handler.flush()
    out = console.getvalue()
    text = log_file.read_text()
    # console: no per-parameter line, one summary
    assert not PER_PARAM.search(out), out
    summary = [ln for ln in out.splitlines() if 'trainable parameter' in ln]
    assert len(summary) == 1, out
    line = summary[0]
    assert 'optimizer AdamW: 6 trainable parameter tensors' in line
    assert '2 frozen tensors skipped' in line
    assert 'custom_keys with lr_mult: 2, with decay_mult: 2' in line
    assert 'lr=0.0001 wd=0.01: 2' in line and 'lr=0.001 wd=0: 2' in line
    assert 'lr=0.001 wd=0.01: 2' in line
    # file: every per-parameter record, and the summary
    assert 'backbone.weight is skipped since its requires_grad=False' in text
    assert 'paramwise_options -- neck.weight:lr_mult=0.1' in text
    assert 'paramwise_options -- head.1.bias:decay_mult=0.0' in text
    assert len(PER_PARAM.findall(text)) > 6
    assert 'trainable parameter tensors' in text
    # the filter is gone afterwards
    assert not any(isinstance(f, PerParameterRecordFilter)
                   for h in logger.handlers for f in h.filters)
    # the optimizer is what the default constructor builds, with the
    # groups of equal options merged (6 tensors, 3 option sets)
    lrs = sorted((g['lr'], len(g['params']))
                 for g in wrapper.optimizer.param_groups)
    assert lrs == [(pytest.approx(1e-4), 2), (pytest.approx(1e-3), 2),
                   (pytest.approx(1e-3), 2)]
    assert '6 parameter groups merged into 3 (equal options)' in line


def test_context_filters_console_only(tmp_path):
    logger, console, log_file = _logger(tmp_path)
    with per_parameter_records_off_console(logger) as record_filter:
        logger.warning('a.weight is skipped since its requires_grad=False')
        logger.info('kept')
    logger.warning('b.weight is skipped since its requires_grad=False')
    for handler in logger.handlers:
        handler.flush()
    assert record_filter.dropped == 1
    out = console.getvalue()
    assert 'a.weight' not in out and 'kept' in out and 'b.weight' in out
    text = log_file.read_text()
    assert 'a.weight' in text and 'b.weight' in text


def test_use_summary_constructor():
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=1.))))
    assert use_summary_constructor(cfg)
    assert cfg.optim_wrapper.constructor == 'SummaryOptimWrapperConstructor'
    own = Config(dict(optim_wrapper=dict(constructor='Mine',
                                         optimizer=dict(type='SGD'))))
    assert not use_summary_constructor(own)
    assert own.optim_wrapper.constructor == 'Mine'
    assert not use_summary_constructor(Config(dict()))


def test_train_tool_uses_it(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    from mmengine.runner import Runner
    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        'sera_tool_train_optim_log', repo / 'tools' / 'train.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    seen = []

    class Stop(Exception):
        pass

    def stop(cfg):
        seen.append(cfg.optim_wrapper.get('constructor'))
        raise Stop

    monkeypatch.setattr(Runner, 'from_cfg', stop)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Stop):
        tool.main([str(repo / 'configs' / 'sera' / 'sera_tiny_synthetic.py')])
    assert seen == [SummaryOptimWrapperConstructor.__name__]


def test_summary_without_paramwise_cfg_counts_frozen_tensors(tmp_path):
    """Without paramwise_cfg mmengine hands every parameter (frozen too) to
    the optimizer: they are not counted as trainable."""
    logger, console, _ = _logger(tmp_path)
    build_optim_wrapper(_Model(), dict(
        constructor='SummaryOptimWrapperConstructor',
        optimizer=dict(type='SGD', lr=0.5)))
    line = [ln for ln in console.getvalue().splitlines()
            if 'trainable parameter' in ln][0]
    assert 'optimizer SGD: 6 trainable parameter tensors' in line
    assert '0 frozen tensors skipped' in line
    assert '2 frozen tensors in the optimizer (not updated)' in line
    assert 'lr=0.5 wd=0: 6' in line


def test_summary_names_where_the_details_went(tmp_path):
    logger, console, _ = _logger(tmp_path)
    cfg = dict(constructor='SummaryOptimWrapperConstructor',
               optimizer=dict(type='SGD', lr=0.5),
               paramwise_cfg=dict(custom_keys={'neck': dict(lr_mult=0.1)}))
    build_optim_wrapper(_Model(), cfg)
    assert 'per-parameter lines in the log file only)' in console.getvalue()


def _adamw_cfg(merge=True, foreach=None):
    cfg = dict(
        constructor='SummaryOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05,
                       foreach=foreach),
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                           custom_keys={'neck': dict(lr_mult=0.1)}))
    if not merge:
        cfg['merge_param_groups'] = False
    return cfg


def _options_of(optimizer):
    return {id(p): {k: v for k, v in g.items() if k != 'params'}
            for g in optimizer.param_groups for p in g['params']}


@pytest.mark.parametrize('foreach', [False, True])
def test_merged_groups_give_every_tensor_its_options_and_the_same_steps(
        foreach):
    torch.manual_seed(0)
    model = _Model()
    twin = copy.deepcopy(model)
    merged = build_optim_wrapper(model, _adamw_cfg(True, foreach))
    plain = build_optim_wrapper(twin, _adamw_cfg(False, foreach))
    # mmengine: one group per trainable tensor; merged: one per option set
    assert len(plain.optimizer.param_groups) == 6
    assert len(merged.optimizer.param_groups) == 3
    names = {id(p): n for n, p in model.named_parameters()}
    twin_names = {id(p): n for n, p in twin.named_parameters()}
    by_name = {names[i]: o for i, o in _options_of(merged.optimizer).items()}
    twin_by_name = {twin_names[i]: o
                    for i, o in _options_of(plain.optimizer).items()}
    assert by_name == twin_by_name
    assert by_name['neck.weight']['lr'] == pytest.approx(1e-3)
    assert by_name['head.0.weight']['weight_decay'] == 0.05
    assert by_name['head.1.weight']['weight_decay'] == 0.0
    x = torch.randn(5, 4)
    for _ in range(3):
        for m, w in ((model, merged), (twin, plain)):
            loss = m.head(m.neck(m.backbone(x))).square().mean()
            w.update_params(loss)
    for (n, a), (_, b) in zip(model.named_parameters(),
                              twin.named_parameters()):
        assert torch.equal(a, b), n


def test_merged_state_round_trips_and_unmerged_state_is_refused():
    torch.manual_seed(0)
    model = _Model()
    merged = build_optim_wrapper(model, _adamw_cfg())
    plain = build_optim_wrapper(copy.deepcopy(model), _adamw_cfg(False))
    x = torch.randn(5, 4)
    merged.update_params(model.head(model.neck(x)).square().mean())
    saved = copy.deepcopy(merged.state_dict())
    again = build_optim_wrapper(model, _adamw_cfg())
    again.load_state_dict(saved)
    assert len(again.optimizer.state) == 6
    # a run saved with one group per tensor (before the merge): refused
    # with the way to resume it, and the optimizer is left as it was
    old = plain.state_dict()
    with pytest.raises(ValueError, match='merge_param_groups=False'):
        again.load_state_dict(old)
    assert len(again.optimizer.param_groups) == 3
    unmerged = build_optim_wrapper(model, _adamw_cfg(False))
    unmerged.load_state_dict(old)
    assert len(unmerged.optimizer.param_groups) == 6
    # the other way round: a merged run resumed with the merge turned off
    # is refused with the way back, and the optimizer is left as it was
    plain_again = build_optim_wrapper(model, _adamw_cfg(False))
    with pytest.raises(ValueError, match='merge_param_groups=True'):
        plain_again.load_state_dict(saved)
    assert len(plain_again.optimizer.param_groups) == 6
    assert not plain_again.optimizer.state


def test_merge_option_is_checked_and_a_stepped_optimizer_refused():
    with pytest.raises(TypeError, match='merge_param_groups'):
        build_optim_wrapper(_Model(), dict(_adamw_cfg(),
                                           merge_param_groups='yes'))
    model = _Model()
    opt = torch.optim.SGD([dict(params=[model.neck.weight]),
                           dict(params=[model.neck.bias])], lr=0.1,
                          momentum=0.9)
    model.neck(torch.randn(2, 4)).sum().backward()
    opt.step()
    with pytest.raises(ValueError, match='not stepped'):
        merge_param_groups(opt)
    fresh = torch.optim.SGD([dict(params=[model.neck.weight]),
                             dict(params=[model.neck.bias], lr=0.5)], lr=0.1)
    assert merge_param_groups(fresh) == 2
    assert [len(g['params']) for g in fresh.param_groups] == [1, 1]

    # an optimizer from outside torch.optim keeps its groups
    class Outside(torch.optim.SGD):
        pass

    Outside.__module__ = 'some_package.optim'
    outside = Outside([dict(params=[model.neck.weight]),
                       dict(params=[model.neck.bias])], lr=0.1)
    assert merge_param_groups(outside) == 2
    assert len(outside.param_groups) == 2
    same = torch.optim.SGD([dict(params=[model.neck.weight]),
                            dict(params=[model.neck.bias])], lr=0.1)
    assert merge_param_groups(same) == 2
    assert len(same.param_groups) == 1
