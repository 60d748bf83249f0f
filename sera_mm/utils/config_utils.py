"""Config helpers: build a model config's architecture with random weights
when its pretrained weights are not available on this machine; name the
config entry a component rejects."""
import contextlib
import copy
import difflib
import os.path as osp
import re
from typing import Any, Iterator, List, Optional

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


# --------------------------------------------------------------------------
# config entries a component does not accept
# --------------------------------------------------------------------------
class ConfigError(ValueError):
    """A config entry that the component it builds does not accept (e.g. a
    misspelt argument name); the message names the config file and the
    entry's dotted path."""


#: ``TypeError`` message of a constructor given an argument it lacks
#: (python >= 3.10 prefixes the class name).
_UNEXPECTED_ARG = re.compile(
    r"(?:(?P<cls>[\w.]+)\.)?__init__\(\) got an unexpected keyword "
    r"argument '(?P<arg>\w+)'")


def config_key_paths(cfg: Any, key: str) -> List[str]:
    """Dotted paths (``model.decode_head.chanels``, ``custom_hooks[0].x``)
    of every mapping entry named ``key`` in a nested config."""
    found: List[str] = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                sub = f'{path}.{name}' if path else str(name)
                if name == key:
                    kind = node.get('type')
                    found.append(sub + (f' (type {kind})'
                                        if isinstance(kind, str) else ''))
                visit(value, sub)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f'{path}[{i}]')

    if hasattr(cfg, 'to_dict'):
        cfg = cfg.to_dict()
    visit(cfg, '')
    return found


def explain_config_type_error(err: TypeError, cfg: Any,
                              config_path: str) -> Optional[ConfigError]:
    """A :class:`ConfigError` for a constructor's "unexpected keyword
    argument" ``TypeError`` whose argument is a key of ``cfg`` (so a config
    entry caused it), else None (a ``TypeError`` from code, kept as is)."""
    match = _UNEXPECTED_ARG.search(str(err))
    if match is None:
        return None
    paths = config_key_paths(cfg, match.group('arg'))
    if not paths:
        return None
    who = match.group('cls') or 'the component'
    return ConfigError(
        f'config {config_path}: unknown argument {match.group("arg")!r} at '
        f'{", ".join(paths)}: {who}.__init__ does not accept it (misspelt, '
        'or an option of another type?)')


#: mmengine's ``KeyError`` for a ``type`` no registry in the scope chain has.
_UNKNOWN_TYPE = re.compile(
    r'^(?P<name>.+?) is not in the (?P<scope>[\w.]+)::(?P<registry>.+?) '
    r'registry')


def _registered_names(scope: str, registry_name: str) -> List[str]:
    """Every type name the registry ``registry_name`` (e.g. 'model') of
    ``scope`` (e.g. 'sera_mm') and its parents (mmseg's, mmengine's)
    know."""
    from mmengine.registry import Registry

    from sera_mm import registry as sera_registry
    names: List[str] = []
    for value in vars(sera_registry).values():
        if isinstance(value, Registry) and value.name == registry_name \
                and value.scope == scope:
            node = value
            while node is not None:
                names += list(node.module_dict)
                node = node.parent
            break
    return names


def explain_config_key_error(err: KeyError, cfg: Any,
                             config_path: str) -> Optional[ConfigError]:
    """A :class:`ConfigError` for mmengine's "<type> is not in the
    <registry> registry" ``KeyError`` when a ``type`` of ``cfg`` has that
    value (naming where, with the closest registered names), else None."""
    text = err.args[0] if len(err.args) == 1 and isinstance(
        err.args[0], str) else str(err)
    match = _UNKNOWN_TYPE.search(text)
    if match is None:
        return None
    name = match.group('name')
    paths = [p.split(' (type ')[0] for p in config_key_paths(cfg, 'type')
             if p.endswith(f' (type {name})')]
    if not paths:
        return None
    close = difflib.get_close_matches(
        name, _registered_names(match.group('scope'),
                                match.group('registry')), n=3)
    hint = f'; did you mean {", ".join(map(repr, close))}?' if close else \
        ' (misspelt, or its module is not imported: custom_imports)'
    return ConfigError(
        f'config {config_path}: unknown type {name!r} at '
        f'{", ".join(paths)}: not in the {match.group("scope")}::'
        f'{match.group("registry")} registry{hint}')


@contextlib.contextmanager
def config_errors(cfg: Any, config_path: str) -> Iterator[None]:
    """Turn a component's "unexpected keyword argument" ``TypeError`` and
    mmengine's unknown-``type`` ``KeyError`` raised inside the block
    (building the Runner, its model, loops, datasets, hooks) into a
    :class:`ConfigError` naming the config file and entry; other errors
    pass through unchanged."""
    try:
        yield
    except TypeError as err:
        explained = explain_config_type_error(err, cfg, config_path)
        if explained is None:
            raise
        raise explained from err
    except KeyError as err:
        explained = explain_config_key_error(err, cfg, config_path)
        if explained is None:
            raise
        raise explained from err


#: Transforms whose ``size`` is the model's (square) input side.
INPUT_SIZE_TRANSFORMS = ('Letterbox', )
_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _set_pipeline_size(pipeline: Any, size: int) -> None:
    for transform in pipeline or ():
        if isinstance(transform, dict) and \
                transform.get('type') in INPUT_SIZE_TRANSFORMS:
            transform['size'] = size


def _set_dataset_size(dataset: Any, size: int) -> None:
    if not isinstance(dataset, dict):
        return
    _set_pipeline_size(dataset.get('pipeline'), size)
    _set_dataset_size(dataset.get('dataset'), size)  # wrappers
    for child in dataset.get('datasets') or ():  # ConcatDataset
        _set_dataset_size(child, size)


def apply_input_size(cfg: Any) -> Optional[int]:
    """Make the config's top-level ``input_size`` the one input size.

    ``input_size`` (an int, the side of the square input in pixels) becomes
    the ``size`` of every ``Letterbox`` of the train/val/test dataloaders'
    pipelines (through dataset wrappers and ``ConcatDataset``), of the
    top-level ``train_pipeline`` / ``test_pipeline`` and
    ``model.data_preprocessor.size``. A leaf config then changes the input
    size with one line, ``input_size = 128``, or ``--cfg-options
    input_size=128``: mmengine re-reads no base-file variable, so without
    this a leaf would re-declare both pipelines and the preprocessor.
    :func:`sera_mm.engine.launch_utils.load_config` (every tool) and
    :func:`sera_mm.apis.init_model` call it. A config without
    ``input_size`` is left as it is.

    Returns:
        The size applied, or None.

    Raises:
        ValueError: ``input_size`` is not a positive int.
    """
    size = cfg.get('input_size') if hasattr(cfg, 'get') else None
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError('input_size must be a positive int (the side of '
                         f'the square input in pixels), got {size!r}')
    for key in _LOADERS:
        loader = cfg.get(key)
        if isinstance(loader, dict):
            _set_dataset_size(loader.get('dataset'), size)
    for key in ('train_pipeline', 'test_pipeline'):
        _set_pipeline_size(cfg.get(key), size)
    model = cfg.get('model')
    preprocessor = model.get('data_preprocessor') if isinstance(
        model, dict) else None
    if isinstance(preprocessor, dict) and \
            preprocessor.get('size') is not None:
        preprocessor['size'] = (size, size)
    return size
