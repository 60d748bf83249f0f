"""Checks of the expressions given to inference (the PyTorch API and the
ONNX Runtime segmenter share them). Torch-free."""
from typing import List, Sequence, Union

__all__ = ['check_expressions']


def check_expressions(texts: Union[str, Sequence[str]]) -> List[str]:
    """The expressions as a list; each must be a non-empty string.

    Raises:
        ValueError: no expression, or an empty / non-string one.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError('text: expected an expression or a non-empty list '
                         'of expressions, got an empty list')
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f'text[{i}]: expected str, got {type(t)}')
        if not t.strip():
            raise ValueError(f'text[{i}]: expected a non-empty expression, '
                             f'got {t!r}')
    return texts
