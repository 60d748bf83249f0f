"""sera_mm.apis helpers that need no trained model."""
import logging

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

from sera_mm.apis.inference import _quiet_logger


class _Net(BaseModule):

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)


def _init_lines(quiet: bool, name: str):
    logger = MMLogger.get_instance(name, log_level='INFO')  # now current
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        level = logger.level
        if quiet:
            with _quiet_logger():
                _Net().init_weights()
        else:
            _Net().init_weights()
        assert logger.level == level  # restored
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records if 'init_weights' in
            r.getMessage()]


def test_init_weights_is_quiet_inside_quiet_logger():
    # outside a Runner, mmengine logs every parameter's init at INFO
    assert len(_init_lines(quiet=False, name='sera_apis_loud')) == 2
    assert _init_lines(quiet=True, name='sera_apis_quiet') == []
