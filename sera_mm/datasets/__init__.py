"""REFER-format datasets, pipeline transforms and the synthetic generator."""
from . import transforms  # noqa: F401
from .refer_dataset import SPLITS, ReferDataset
from .synthetic_dataset import SyntheticReferDataset, ensure_synthetic_refer

__all__ = ['ReferDataset', 'SyntheticReferDataset', 'SPLITS',
           'ensure_synthetic_refer']
