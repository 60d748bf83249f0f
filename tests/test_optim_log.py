"""The optimizer constructor's per-parameter log records stay off the
console (and in the log file), replaced by one summary line."""
import io
import logging
import re
from itertools import count

import pytest
import torch.nn as nn

from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402

from sera_mm.engine.optim_wrappers import (  # noqa: E402
    PerParameterRecordFilter, SummaryOptimWrapperConstructor,
    per_parameter_records_off_console, use_summary_constructor)
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
    # the optimizer is what the default constructor builds
    lrs = sorted(g['lr'] for g in wrapper.optimizer.param_groups)
    assert lrs == pytest.approx([1e-4, 1e-4] + [1e-3] * 4)


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
