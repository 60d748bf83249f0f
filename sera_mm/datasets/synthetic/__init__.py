"""Built-in synthetic referring benchmark (shapes with referring
expressions), written in the public REFER layout, and its generalised
variant (multi-target and no-target expressions) in the gRefCOCO layout."""
from .expressions import (EXPR_TYPES, Expression, expression_candidates,
                          resolve, resolve_expression)
from .generator import (generate_synthetic_grefer, generate_synthetic_refer,
                        split_counts)
from .gexpressions import (GREF_TYPES, GExpression, check_gexpression,
                           gref_targets, multi_candidates,
                           no_target_candidates, resolve_bounds)
from .scenes import HELDOUT_PAIRS, Scene, SceneObject, sample_scene
from .shapes import SHAPE_NAMES
from .writer import (GREFS_FILE, REFS_FILE, is_synthetic_refer_complete,
                     read_summary)

__all__ = [
    'generate_synthetic_refer', 'is_synthetic_refer_complete',
    'read_summary', 'split_counts', 'sample_scene', 'Scene', 'SceneObject',
    'Expression', 'expression_candidates', 'resolve', 'resolve_expression',
    'EXPR_TYPES', 'HELDOUT_PAIRS', 'SHAPE_NAMES', 'generate_synthetic_grefer',
    'GREF_TYPES', 'GExpression', 'check_gexpression', 'gref_targets',
    'multi_candidates', 'no_target_candidates', 'resolve_bounds',
    'REFS_FILE', 'GREFS_FILE'
]
