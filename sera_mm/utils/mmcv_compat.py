"""Pure-PyTorch stand-ins for the few ``mmcv.ops`` that MMSegmentation imports.

MMSegmentation 1.2.2 imports ``mmcv.ops.point_sample`` and
``mmcv.ops.sigmoid_focal_loss`` at import time (``mmseg/utils/mask_classification.py``,
``mmseg/models/utils/point_sample.py``, ``decode_heads/san_head.py``,
``losses/focal_loss.py``). ``mmcv-lite`` ships no compiled extension
(``mmcv._ext``), so on a CPU-only install ``import mmseg.models`` fails.

:func:`install` registers a small ``mmcv.ops`` module that provides those two
functions in pure PyTorch. It does nothing when the compiled ops import, so a
full ``mmcv`` build (GPU users) is used unchanged. It is called by
:func:`sera_mm.utils.setup_runtime` (entry points, ``register_all_modules``)
and by the ``sera_mm.models``, ``sera_mm.datasets`` and
``sera_mm.visualization`` packages before they import mmseg; importing
``sera_mm`` alone does not call it.
"""
import importlib
import sys
import types

import torch
import torch.nn.functional as F

_FALLBACK_ATTR = '__sera_mm_fallback__'


def point_sample(input: torch.Tensor,
                 points: torch.Tensor,
                 align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` at normalised ``points`` (same contract as mmcv's).

    Args:
        input: feature map, shape (N, C, H, W).
        points: coordinates in [0, 1], shape (N, P, 2) or (N, Hg, Wg, 2).
        align_corners: passed to :func:`torch.nn.functional.grid_sample`.

    Returns:
        Tensor (N, C, P) or (N, C, Hg, Wg).
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(
        input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    if add_dim:
        out = out.squeeze(3)
    return out


def sigmoid_focal_loss(pred: torch.Tensor,
                       target: torch.Tensor,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       weight=None,
                       reduction: str = 'mean') -> torch.Tensor:
    """Sigmoid focal loss with mmcv's signature; ``target`` holds class
    indices of shape (N,), ``pred`` logits of shape (N, C); an index equal to
    C means background (all classes negative)."""
    num_classes = pred.size(1)
    one_hot = F.one_hot(target.long(), num_classes + 1)[:, :num_classes]
    one_hot = one_hot.type_as(pred)
    prob = pred.sigmoid()
    pt = (1 - prob) * one_hot + prob * (1 - one_hot)
    focal = (alpha * one_hot + (1 - alpha) * (1 - one_hot)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(
        pred, one_hot, reduction='none') * focal
    if weight is not None:
        loss = loss * weight.view(-1, 1)
    if reduction == 'mean':
        return loss.mean()
    if reduction == 'sum':
        return loss.sum()
    return loss


def _missing_op(name: str):
    # mmseg guards its optional ops with ``except ModuleNotFoundError``; an
    # op we do not provide must fail the same way a missing mmcv.ops does.
    if name.startswith('__'):
        raise AttributeError(name)
    raise ModuleNotFoundError(
        f'mmcv.ops.{name} needs the compiled mmcv ops; this environment has '
        'mmcv-lite, whose pure-PyTorch fallback (sera_mm.utils.mmcv_compat) '
        'provides only point_sample and sigmoid_focal_loss. Install the full '
        "mmcv==2.1.0 (pip install -e '.[full-mmcv]') to use it.")


def compiled_ops_available() -> bool:
    """Whether mmcv's compiled extension (``mmcv._ext``) can be imported."""
    try:
        importlib.import_module('mmcv._ext')
    except ImportError:
        return False
    return True


def install() -> bool:
    """Register the fallback ``mmcv.ops`` module if the compiled one is missing.

    Returns:
        True if the fallback was installed (now or earlier), False if the
        compiled ops are available and were left untouched.
    """
    current = sys.modules.get('mmcv.ops')
    if current is not None and getattr(current, _FALLBACK_ATTR, False):
        return True
    if compiled_ops_available():
        return False
    import mmcv
    ops = types.ModuleType('mmcv.ops')
    ops.__doc__ = ('Pure-PyTorch subset of mmcv.ops installed by '
                   'sera_mm.utils.mmcv_compat (mmcv-lite has no compiled ops).')
    ops.point_sample = point_sample
    ops.sigmoid_focal_loss = sigmoid_focal_loss
    ops.__getattr__ = _missing_op
    setattr(ops, _FALLBACK_ATTR, True)
    sys.modules['mmcv.ops'] = ops
    mmcv.ops = ops
    return True
