"""Segmentors: the full referring segmentation models."""
from .sera_segmentor import SERASegmentor

__all__ = ['SERASegmentor']
