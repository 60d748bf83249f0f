"""Package-level behaviour: registries, mmcv-lite compatibility, safe
checkpoint loading, and the process setup (``setup_runtime``) that entry
points call explicitly instead of ``import sera_mm`` doing it."""
import io
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import sera_mm
from sera_mm.utils import checkpoint_safety, mmcv_compat

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Printed by the fresh interpreters below: whether the fallback mmcv.ops is
# in sys.modules, and which of the safe globals setup_runtime adds (mmengine's
# HistoryBuffer, numpy, the restricted getattr) torch allows. (torch's own
# modules add theirs when imported, so those are not compared.)
_STATE = textwrap.dedent('''
    import sys

    import torch


    def state():
        ops = sys.modules.get('mmcv.ops')
        names = [g[1] if isinstance(g, tuple) else
                 f'{g.__module__}.{g.__qualname__}'
                 for g in torch.serialization.get_safe_globals()]
        ours = sorted(n for n in names if n.startswith('numpy')
                      or n.endswith('.HistoryBuffer')
                      or n == 'builtins.getattr')
        return dict(
            fallback=bool(getattr(ops, '__sera_mm_fallback__', False)),
            history_buffer=any(n.endswith('.HistoryBuffer') for n in names),
            sera_globals=ours)
''')


def _fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter at the repository root; it prints
    one JSON line last, which is returned."""
    env = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')
    proc = subprocess.run(
        [sys.executable, '-c', _STATE + textwrap.dedent(code)], cwd=ROOT,
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_sera_mm_changes_nothing_outside_the_package():
    out = _fresh('''
        import json
        before = state()
        import sera_mm
        import sera_mm.registry
        import sera_mm.utils
        print(json.dumps(dict(before=before, after=state(),
                              mmseg_models='mmseg.models' in sys.modules)))
    ''')
    assert out['after'] == out['before']
    assert out['after']['fallback'] is False
    assert out['after']['sera_globals'] == []
    assert out['mmseg_models'] is False


def test_setup_runtime_installs_both_idempotently():
    out = _fresh('''
        import json
        import sera_mm
        from sera_mm.utils import setup_runtime
        from sera_mm.utils.mmcv_compat import compiled_ops_available
        setup_runtime()
        once = state()
        setup_runtime()
        print(json.dumps(dict(once=once, twice=state(),
                              compiled=compiled_ops_available())))
    ''')
    assert out['once'] == out['twice']
    assert out['once']['history_buffer'] is True
    assert 'builtins.getattr' in out['once']['sera_globals']
    # the fallback only where mmcv's compiled ops are missing (mmcv-lite)
    assert out['once']['fallback'] is not out['compiled']


def test_register_all_modules_runs_the_setup():
    out = _fresh('''
        import json
        from sera_mm.utils import register_all_modules
        from sera_mm.utils.mmcv_compat import compiled_ops_available
        register_all_modules()
        print(json.dumps(dict(state(), compiled=compiled_ops_available())))
    ''')
    assert out['history_buffer'] is True
    assert out['fallback'] is not out['compiled']


def test_a_config_loaded_by_a_foreign_tool_builds_a_sera_model():
    """What mmseg's own tools do: load the config (mmengine imports its
    custom_imports, sera_mm.plugin), set the default scope, build from
    mmseg's registry; no SERA-MM call in between."""
    out = _fresh('''
        import json
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config.fromfile('configs/sera/sera_tiny_synthetic.py')
        after_load = state()
        init_default_scope(cfg.default_scope)
        from mmseg.registry import MODELS
        model = MODELS.build(cfg.model)
        print(json.dumps(dict(after_load, imports=cfg.custom_imports.imports,
                              model=type(model).__name__)))
    ''')
    assert out['imports'] == ['sera_mm.plugin']
    assert out['model'] == 'SERASegmentor'
    assert out['history_buffer'] is True


def test_model_modules_import_directly_in_a_fresh_interpreter():
    """sera_mm.models subclasses mmseg classes, so it installs the mmcv.ops
    fallback (only that) itself; the safe globals stay untouched."""
    out = _fresh('''
        import json
        before = state()
        from sera_mm.models import SERASegmentor
        from sera_mm.models.heads.sera_head import SERAHead
        from sera_mm.models.losses.dice_loss import SmoothDiceLoss
        from sera_mm.utils.mmcv_compat import compiled_ops_available
        print(json.dumps(dict(state(), before=before,
                              compiled=compiled_ops_available())))
    ''')
    assert out['fallback'] is not out['compiled']
    assert out['sera_globals'] == out['before']['sera_globals'] == []


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
