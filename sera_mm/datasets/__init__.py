"""REFER- and gRefCOCO-format datasets, pipeline transforms and the
synthetic generator."""
from . import transforms  # noqa: F401
from .cris_dataset import CRISReferDataset
from .grefer_dataset import GReferDataset, target_expr_type
from .mixed_dataset import ConcatReferDataset, MixedReferDataset
from .refer_dataset import SPLITS, ReferDataset
from .synthetic_dataset import (SyntheticGReferDataset,
                                SyntheticReferDataset,
                                ensure_synthetic_grefer,
                                ensure_synthetic_refer)

__all__ = ['ReferDataset', 'SyntheticReferDataset', 'SPLITS',
           'ensure_synthetic_refer', 'GReferDataset',
           'SyntheticGReferDataset', 'ensure_synthetic_grefer',
           'target_expr_type', 'MixedReferDataset', 'ConcatReferDataset',
           'CRISReferDataset']
