"""Data structures every part of a model exchanges (no model code here, so
importing them loads nothing else)."""
from .letterbox import undo_letterbox
from .text_features import TextFeatures

__all__ = ['TextFeatures', 'undo_letterbox']
