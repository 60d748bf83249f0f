"""Config helpers: build a model config's architecture with random weights
when its pretrained weights are not available on this machine."""
import copy
import os.path as osp
from typing import Any, Optional

PRETRAINED_KEY = 'pretrained'


def pretrained_available(pretrained: Optional[str]) -> bool:
    """Whether ``pretrained`` names weights present on this machine: a local
    file/folder, or a ``pkg:`` package that is installed. A hub id counts
    only if it is a local folder (no network is assumed)."""
    if pretrained is None:
        return True
    if not isinstance(pretrained, str):
        return False
    try:
        from sera_mm.utils.pretrained import resolve_pretrained
        path = resolve_pretrained(pretrained)
    except Exception:  # unknown / missing package, empty string, ...
        return False
    return path is not None and osp.exists(osp.expanduser(path))


def random_init_cfg(cfg_model: Any, force: bool = False) -> Any:
    """Return a copy of a model config with unavailable weights dropped.

    Walks nested dicts/lists (plain dicts, mmengine ``ConfigDict``) and sets
    every ``pretrained`` entry to None when its weights are not available
    locally (:func:`pretrained_available`), or always when ``force``. The
    components then build from their ``config`` entry (architecture kwargs)
    with random weights. The input is not modified.

    Args:
        cfg_model: a model config (e.g. ``cfg.model``).
        force: drop every ``pretrained`` entry, available or not.

    Returns:
        The modified copy (same types as the input).
    """
    out = copy.deepcopy(cfg_model)
    _walk(out, force)
    return out


def _walk(node: Any, force: bool) -> None:
    if isinstance(node, dict):
        for key in list(node.keys()):
            value = node[key]
            if key == PRETRAINED_KEY and (value is not None) and (
                    force or not pretrained_available(value)):
                node[key] = None
            else:
                _walk(value, force)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _walk(item, force)
