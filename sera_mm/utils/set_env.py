"""Process setup for SERA-MM: :func:`setup_runtime` (the ``mmcv.ops``
fallback and the checkpoint safe globals) and :func:`register_all_modules`
(which calls it, then imports every SERA-MM and mmseg module so its
components are registered, and sets the default scope, as mmseg does).

Importing ``sera_mm`` does neither; the entry points call them explicitly
(``docs/en/advanced_guides/architecture.md``, "Process setup").
"""
import datetime
import warnings

from mmengine import DefaultScope

from . import checkpoint_safety, mmcv_compat


def setup_runtime() -> None:
    """Prepare this process to run SERA-MM; idempotent, cheap to repeat.

    It does two things, both process-wide:

    1. **The mmcv.ops fallback** (:func:`sera_mm.utils.mmcv_compat.install`):
       ``mmcv-lite`` has no compiled ops, yet MMSegmentation imports
       ``mmcv.ops`` when ``mmseg.models`` (and ``mmseg.utils``,
       ``mmseg.datasets``, ``mmseg.visualization``) is imported. Where the
       compiled ops are missing, a pure-PyTorch ``mmcv.ops`` providing the
       two functions mmseg uses is put in ``sys.modules``; with a full mmcv
       nothing changes.
    2. **Checkpoint safe globals**
       (``allow_mmengine_checkpoint_globals`` in
       :mod:`sera_mm.utils.checkpoint_safety`):
       the few classes mmengine's Runner stores in a checkpoint's ``meta``
       are added to ``torch.load(weights_only=True)``'s allow-list, so
       resuming and testing work without turning ``weights_only`` off.

    Who calls it: :func:`register_all_modules` (first thing), every script
    under ``tools/`` before it imports mmseg's or SERA-MM's models,
    :func:`sera_mm.apis.init_model`, and :mod:`sera_mm.plugin`, the module
    the configs' ``custom_imports`` name, so that a config loaded by another
    mmengine-based tool (e.g. mmseg's ``tools/train.py``) runs it too.

    Why it is not done by ``import sera_mm``: both steps change global state
    of other libraries (``sys.modules`` and torch's unpickling allow-list).
    A program that imports SERA-MM for one helper should not find either
    changed, so each happens where it is asked for. The one exception is
    the mmcv.ops fallback alone, which ``sera_mm.models``,
    ``sera_mm.datasets`` and ``sera_mm.visualization`` install when they
    are imported, because their modules subclass mmseg classes and cannot
    be imported on mmcv-lite without it; it only adds a module that is
    missing, never replaces a real one.
    """
    mmcv_compat.install()
    checkpoint_safety.allow_mmengine_checkpoint_globals()


def register_all_modules(init_default_scope: bool = True) -> None:
    """Run :func:`setup_runtime`, then register all SERA-MM and
    MMSegmentation modules.

    Args:
        init_default_scope: set the global default scope to ``sera_mm`` so
            registries build from SERA-MM's nodes (which fall back to mmseg's
            and mmengine's).
    """
    setup_runtime()
    from mmseg.utils import register_all_modules as mmseg_register
    mmseg_register(init_default_scope=False)
    # mmseg's own register_all_modules leaves its visualizer out; child
    # registries only import their own locations, so import it here.
    import mmseg.visualization  # noqa: F401
    import sera_mm.datasets  # noqa: F401
    import sera_mm.engine  # noqa: F401
    import sera_mm.evaluation  # noqa: F401
    import sera_mm.models  # noqa: F401
    import sera_mm.visualization  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or not DefaultScope.check_instance_created('sera_mm'):
        DefaultScope.get_instance('sera_mm', scope_name='sera_mm')
        return
    if current.scope_name != 'sera_mm':
        warnings.warn(f'The current default scope "{current.scope_name}" is '
                      'not "sera_mm"; register_all_modules switches it to '
                      '"sera_mm".')
        DefaultScope.get_instance(f'sera_mm-{datetime.datetime.now()}',
                                  scope_name='sera_mm')
