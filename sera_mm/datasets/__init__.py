"""REFER-format datasets, pipeline transforms and the synthetic generator."""
from . import transforms  # noqa: F401
