"""A Runner whose console shows what a user needs: the environment report,
the full config and the hook table go to the log file only."""
import logging
import warnings
from typing import Iterable, Tuple

from mmengine.runner import Runner

from sera_mm.registry import RUNNERS
from sera_mm.utils.allocator import apply_malloc_cfg

#: Console records that start with one of these go to the log file only:
#: mmengine's environment report, the full config and the hook table, and
#: mmengine's notes about its own deprecations and defaults.
SETUP_DUMPS: Tuple[str, ...] = (
    '\n' + '-' * 60 + '\nSystem environment:',
    'Config:\n',
    'Hooks will be executed in the following order',
    '"FileClient" will be deprecated',
    '"HardDiskBackend" is the alias',
    'The prefix is not set in metric class',
    '`save_param_scheduler` is True but',
    'Distributed training is not used, all SyncBatchNorm',
)

#: Third-party warnings that say nothing actionable about a SERA-MM run
#: (message regex, category): mmcv-lite lacks the compiled deformable
#: attention SERA-MM never uses; mmseg's deprecation of its own build_loss
#: and the default of its CrossEntropyLoss(avg_non_ignore).
KNOWN_HARMLESS_WARNINGS: Tuple[Tuple[str, type], ...] = (
    (r'Fail to import ``MultiScaleDeformableAttention``', UserWarning),
    (r'``build_loss`` would be deprecated soon', UserWarning),
    (r'Default ``avg_non_ignore`` is False', UserWarning),
)


class SetupDumpFilter(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: Iterable[str] = SETUP_DUMPS) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(self.prefixes)


def quiet_console(logger: logging.Logger) -> None:
    """Attach :class:`SetupDumpFilter` to the console handlers of
    ``logger`` (file handlers keep every record)."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            if not any(isinstance(f, SetupDumpFilter)
                       for f in handler.filters):
                handler.addFilter(SetupDumpFilter())


def silence_known_warnings() -> None:
    """Ignore :data:`KNOWN_HARMLESS_WARNINGS` (and nothing else)."""
    for message, category in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings('ignore', message=message,
                                category=category)


@RUNNERS.register_module()
class QuietConsoleRunner(Runner):
    """mmengine's Runner with a quiet console: its environment report, the
    full config and the hook table are written to the log file
    (``<work_dir>/<timestamp>/<timestamp>.log``) but not to the console.

    It also applies ``env_cfg.malloc`` (glibc ``malloc`` settings, see
    :mod:`sera_mm.utils.allocator`) before the data loader workers fork.
    """

    def setup_env(self, env_cfg: dict) -> None:
        apply_malloc_cfg(env_cfg.get('malloc'))
        super().setup_env(env_cfg)

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        quiet_console(logger)
        return logger


__all__ = [
    'QuietConsoleRunner', 'SetupDumpFilter', 'quiet_console',
    'silence_known_warnings', 'SETUP_DUMPS', 'KNOWN_HARMLESS_WARNINGS'
]
