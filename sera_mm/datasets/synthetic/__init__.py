"""Built-in synthetic referring benchmark (shapes with referring
expressions), written in the public REFER layout."""
from .expressions import (EXPR_TYPES, Expression, expression_candidates,
                          resolve, resolve_expression)
from .generator import generate_synthetic_refer, split_counts
from .scenes import HELDOUT_PAIRS, Scene, SceneObject, sample_scene
from .shapes import SHAPE_NAMES
from .writer import is_synthetic_refer_complete, read_summary

__all__ = [
    'generate_synthetic_refer', 'is_synthetic_refer_complete',
    'read_summary', 'split_counts', 'sample_scene', 'Scene', 'SceneObject',
    'Expression', 'expression_candidates', 'resolve', 'resolve_expression',
    'EXPR_TYPES', 'HELDOUT_PAIRS', 'SHAPE_NAMES'
]
