"""Training/testing machinery: PET checkpoints, atomic saving, CPU
distributed launching, CPU mixed precision, the optimizer constructor with a
summarised log, hooks."""
from sera_mm.utils.file_io import AtomicLocalBackend, atomic_torch_save
from .dist import cleanup_distributed, setup_distributed
from .hooks import PETCheckpointHook, PredictionDumpHook, StateDigestHook
from .optim_wrappers import CPUAmpOptimWrapper, SummaryOptimWrapperConstructor
from .runner import QuietConsoleRunner
from .pet_checkpoint import (CheckpointMismatchError, CheckpointReadError,
                             UnsafeCheckpointError, is_pet_checkpoint,
                             load_checkpoint_any, load_full_checkpoint,
                             load_pet_checkpoint, read_checkpoint)

__all__ = [
    'AtomicLocalBackend', 'atomic_torch_save', 'setup_distributed',
    'cleanup_distributed', 'PETCheckpointHook', 'PredictionDumpHook',
    'StateDigestHook', 'CPUAmpOptimWrapper', 'SummaryOptimWrapperConstructor',
    'CheckpointMismatchError', 'CheckpointReadError', 'UnsafeCheckpointError',
    'is_pet_checkpoint',
    'load_checkpoint_any', 'load_full_checkpoint', 'load_pet_checkpoint',
    'read_checkpoint', 'QuietConsoleRunner'
]
