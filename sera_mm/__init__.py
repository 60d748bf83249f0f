"""SERA-MM: Spatio-Semantic Expert Routing for referring image segmentation,
as an OpenMMLab (MMSegmentation 1.x) plugin."""
from .utils import checkpoint_safety as _checkpoint_safety
from .utils import mmcv_compat as _mmcv_compat

_mmcv_compat.install()  # must run before anything imports mmseg.models
_checkpoint_safety.allow_mmengine_checkpoint_globals()

from .version import __version__  # noqa: E402

__all__ = ['__version__']
