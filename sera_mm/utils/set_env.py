"""``register_all_modules``: import every SERA-MM (and mmseg) module so its
components are registered, and set the default scope, as mmseg does."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register all SERA-MM and MMSegmentation modules.

    Args:
        init_default_scope: set the global default scope to ``sera_mm`` so
            registries build from SERA-MM's nodes (which fall back to mmseg's
            and mmengine's).
    """
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
