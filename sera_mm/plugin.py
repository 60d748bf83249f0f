"""The module SERA-MM's configs name in ``custom_imports``.

mmengine imports the modules a config lists in ``custom_imports`` whenever
it loads the config, in any mmengine-based program: SERA-MM's tools, but
also MMSegmentation's own ``tools/train.py`` or ``tools/test.py``. Importing
this module prepares such a program for SERA-MM: it runs
:func:`sera_mm.utils.setup_runtime` (the ``mmcv.ops`` fallback and the
checkpoint safe globals) and registers every SERA-MM and mmseg module
(:func:`sera_mm.utils.register_all_modules`, without touching the default
scope, which the config's ``default_scope='sera_mm'`` sets when a Runner is
built). Doing this is the module's only purpose; ``import sera_mm`` itself
changes nothing.

A config that replaces the runtime's ``custom_imports`` keeps
``'sera_mm.plugin'`` first in its list::

    custom_imports = dict(imports=['sera_mm.plugin', 'my_experts'],
                          allow_failed_imports=False)
"""
from sera_mm.utils import register_all_modules

register_all_modules(init_default_scope=False)
