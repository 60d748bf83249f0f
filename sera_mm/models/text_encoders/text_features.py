"""Kept for configs and code that import TextFeatures from here; it lives in
:mod:`sera_mm.structures`."""
from sera_mm.structures.text_features import TextFeatures

__all__ = ['TextFeatures']
