"""REFER- and gRefCOCO-format datasets, pipeline transforms and the
synthetic generator."""
# This package's modules subclass mmseg classes, and importing those needs
# mmcv.ops, which mmcv-lite lacks: install the pure-PyTorch fallback first
# (only that; a no-op with the compiled ops). The rest of the process setup
# is sera_mm.utils.setup_runtime(), called by the entry points.
from sera_mm.utils import mmcv_compat as _mmcv_compat

_mmcv_compat.install()
from . import transforms  # noqa: E402,F401
from .collate import refer_collate  # noqa: E402
from .cris_dataset import CRISReferDataset  # noqa: E402
from .grefer_dataset import GReferDataset, target_expr_type  # noqa: E402
from .mixed_dataset import ConcatReferDataset, MixedReferDataset  # noqa: E402
from .refer_dataset import SPLITS, ReferDataset  # noqa: E402
from .synthetic_dataset import (SyntheticGReferDataset,  # noqa: E402
                                SyntheticReferDataset,
                                ensure_synthetic_grefer,
                                ensure_synthetic_refer)

__all__ = ['ReferDataset', 'SyntheticReferDataset', 'SPLITS',
           'ensure_synthetic_refer', 'GReferDataset',
           'SyntheticGReferDataset', 'ensure_synthetic_grefer',
           'target_expr_type', 'MixedReferDataset', 'ConcatReferDataset',
           'CRISReferDataset', 'refer_collate']
