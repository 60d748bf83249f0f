"""CRIS (Wang et al., CVPR 2022) as a SERA-MM project: the text-modulated
FPN neck. Imported by the project's configs through ``custom_imports``."""
from .cris_neck import CoordConvNormReLU, CRISNeck, resize_to

__all__ = ['CRISNeck', 'CoordConvNormReLU', 'resize_to']
