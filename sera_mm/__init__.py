"""SERA-MM: Spatio-Semantic Expert Routing for referring image segmentation,
as an OpenMMLab (MMSegmentation 1.x) plugin.

Importing the package changes nothing outside it. Entry points prepare the
process with :func:`sera_mm.utils.setup_runtime` (which
:func:`sera_mm.utils.register_all_modules` calls); see
``docs/en/advanced_guides/architecture.md``.
"""
from .version import __version__

__all__ = ['__version__']
