"""Keep ``torch.load(weights_only=True)`` working for mmengine checkpoints.

Since torch 2.6, ``torch.load`` unpickles only tensors and plain containers
by default. mmengine's Runner stores a few more objects in ``meta`` (the
message hub's ``HistoryBuffer`` and numpy arrays/scalars), so resuming fails.
Rather than turning ``weights_only`` off (unpickling an untrusted checkpoint
runs arbitrary code), :func:`allow_mmengine_checkpoint_globals` allows exactly
those classes.
"""
from typing import List

import numpy as np
import torch

_done = False


def _numpy_globals() -> List[object]:
    allowed: List[object] = [np.ndarray, np.dtype]
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    allowed += [_reconstruct, scalar]
    # Concrete dtype classes (numpy >= 1.25), pickled with every dtype.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                allowed.append(obj)
    return allowed


def _history_buffer_getattr(obj, name: str):
    """Stand-in for ``getattr`` in checkpoints: ``HistoryBuffer.__getstate__``
    pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``.
    Only that lookup is allowed, not a general ``getattr``."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in HistoryBuffer._statistics_methods:
        return HistoryBuffer._statistics_methods[name]
    if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(HistoryBuffer, name)
    raise RuntimeError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only the '
        'statistics methods of mmengine HistoryBuffer are allowed')


def safe_checkpoint_globals() -> List[object]:
    """What mmengine checkpoints contain beyond tensors/containers."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')
            ] + _numpy_globals()


def allow_mmengine_checkpoint_globals() -> None:
    """Allow-list :func:`safe_checkpoint_globals` for ``torch.load``
    (idempotent; a no-op on torch versions without ``add_safe_globals``)."""
    global _done
    if _done or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(safe_checkpoint_globals())
    _done = True
