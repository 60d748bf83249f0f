"""Adapters that run beside a sub-module of a frozen layer (DETRIS puts its
adapters beside the MLP), attached with forward hooks so that the
pretrained layer itself (an HF transformers module) is used unchanged.

The hook functions are ``functools.partial`` objects over bound methods of
the owning module: a deep copy of the model (EMA, model averaging) re-binds
them to the copy, so the copied layers call the copied adapters.
"""
from typing import Any, Dict


class ForwardContext:
    """Per-forward inputs the hooks need (text features, grid size).

    Kept until the next forward (activation checkpointing recomputes the
    layers in the backward pass and runs the hooks again). Copies and
    pickles come back empty: the tensors are non-leaf and belong to one
    forward.
    """

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}

    def set(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str, owner: str) -> Any:
        if key not in self.values:
            raise RuntimeError(
                f'{owner}: a hooked layer ran outside the owner\'s forward '
                f'(no {key!r} for this forward); call the owning module, '
                f'not its layers')
        return self.values[key]

    def __deepcopy__(self, memo: dict) -> 'ForwardContext':
        return ForwardContext()

    def __getstate__(self) -> dict:
        return {'values': {}}


def stash_first_arg(stash: ForwardContext, key: str, module, args) -> None:
    """Forward pre-hook body: keep the module's first input under ``key``
    (the owner's output hook pops it)."""
    stash.values[key] = args[0]


__all__ = ['ForwardContext', 'stash_first_arg']
