"""SERA-MM models: one subpackage per architectural role."""
# This package's modules subclass mmseg classes, and importing those needs
# mmcv.ops, which mmcv-lite lacks: install the pure-PyTorch fallback first
# (only that; a no-op with the compiled ops). The rest of the process setup
# is sera_mm.utils.setup_runtime(), called by the entry points.
from sera_mm.utils import mmcv_compat as _mmcv_compat

_mmcv_compat.install()
from . import (  # noqa: E402,F401
    adapters, backbones, heads, losses, necks, routers, segmentors,
    text_encoders)
from .data_preprocessor import ReferDataPreProcessor  # noqa: E402
from .segmentors import SERASegmentor  # noqa: E402

__all__ = [
    'adapters', 'backbones', 'heads', 'losses', 'necks', 'routers',
    'segmentors', 'text_encoders', 'SERASegmentor', 'ReferDataPreProcessor'
]
