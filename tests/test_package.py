"""Package-level behaviour: registries, mmcv-lite compatibility, safe
checkpoint loading."""
import io

import numpy as np
import pytest
import torch

import sera_mm
from sera_mm.utils import checkpoint_safety, mmcv_compat


def test_registries_are_children_of_mmseg():
    from mmseg.registry import MODELS as MMSEG_MODELS

    from sera_mm.registry import DATASETS, METRICS, MODELS, TRANSFORMS
    assert MODELS.parent is MMSEG_MODELS
    for reg in (MODELS, DATASETS, METRICS, TRANSFORMS):
        assert reg.scope == 'sera_mm'


def test_register_all_modules_builds_mmseg_types_in_sera_scope():
    from mmengine import DefaultScope

    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    register_all_modules()
    assert DefaultScope.get_current_instance().scope_name == 'sera_mm'
    loss = MODELS.build(dict(type='DiceLoss', use_sigmoid=True))
    assert type(loss).__name__ == 'DiceLoss'


def test_mmcv_ops_fallback_point_sample_matches_grid_sample():
    from mmcv.ops import point_sample
    feat = torch.arange(16.).view(1, 1, 4, 4)
    # Centre of pixel (row 1, col 2) in normalised [0, 1] coordinates.
    pts = torch.tensor([[[2.5 / 4, 1.5 / 4]]])
    out = point_sample(feat, pts, align_corners=False)
    assert out.shape == (1, 1, 1)
    assert out.item() == pytest.approx(6.0)


def test_mmcv_ops_fallback_is_inactive_with_compiled_ops(monkeypatch):
    import sys
    saved = sys.modules.get('mmcv.ops')
    monkeypatch.setattr(mmcv_compat, 'compiled_ops_available', lambda: True)
    monkeypatch.delitem(sys.modules, 'mmcv.ops', raising=False)
    assert mmcv_compat.install() is False
    assert 'mmcv.ops' not in sys.modules
    if saved is not None:
        sys.modules['mmcv.ops'] = saved


def test_mmcv_ops_fallback_missing_op_raises_module_not_found():
    if mmcv_compat.compiled_ops_available():
        pytest.skip('full mmcv installed: the fallback is not used')
    with pytest.raises(ModuleNotFoundError, match='full-mmcv'):
        from mmcv.ops import DeformConv2d  # noqa: F401


def test_sigmoid_focal_loss_fallback_matches_formula():
    pred = torch.tensor([[0.3, -1.2]])
    target = torch.tensor([1])
    loss = mmcv_compat.sigmoid_focal_loss(pred, target, 2.0, 0.25,
                                          reduction='sum')
    p = pred.sigmoid()[0]
    expected = (-(1 - 0.25) * p[0]**2 * torch.log(1 - p[0])
                - 0.25 * (1 - p[1])**2 * torch.log(p[1]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_runner_style_checkpoint_loads_with_weights_only():
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('test_ckpt_safety')
    hub.update_scalar('train/loss', np.float64(0.25))
    hub.update_info('arr', np.arange(3, dtype=np.float32))
    buf = io.BytesIO()
    torch.save({'meta': {'message_hub': hub.state_dict(),
                         'seed': np.int64(7)},
                'state_dict': {'w': torch.ones(2)}}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)  # weights_only=True is torch's default
    assert isinstance(ckpt['meta']['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert ckpt['meta']['seed'] == 7


def test_checkpoint_getattr_is_restricted_to_history_buffer():

    from mmengine.logging import HistoryBuffer

    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    buf = io.BytesIO()
    torch.save({'x': Sneaky()}, buf)
    buf.seek(0)
    with pytest.raises(Exception, match='only the statistics methods'):
        torch.load(buf)


def test_version():
    assert sera_mm.__version__.count('.') == 2
    assert callable(checkpoint_safety.allow_mmengine_checkpoint_globals)
