"""Parameter-efficient (PET) checkpoints: save what was trained, merge it back.

SERA freezes the pretrained encoders and trains only adapters, routers, the
neck, the head and a few norm/bias terms. A PET checkpoint keeps only

* the parameters with ``requires_grad=True`` (``trainable_keys``),
* the buffers that changed during training (e.g. BatchNorm statistics of a
  module that trains in ``train()`` mode), or that an earlier PET checkpoint
  of the same run carried,

plus ``meta['pet']``::

    dict(format_version=2,
         pretrained={'backbone.model_name_or_path': '...', ...},
         trainable_keys=[...], buffer_keys=[...],
         model_class='SERASegmentor',
         config_digest='<sha256 of the model config>',
         base_fingerprint={key: [shape, dtype, sum, sum of squares]}
         # for every state entry the checkpoint omits (format 1 stored
         # base_digest, an exact SHA-256 of those entries; upgrade such a
         # checkpoint with tools/model_converters/upgrade_checkpoint.py)

Loading merges it into a model built with its pretrained weights and is
strict about what the checkpoint holds: a key the model lacks, a shape
mismatch, or a trainable parameter of the model that the checkpoint lacks is
an error that counts and names the offending keys (typically a checkpoint of
another config). ``base_fingerprint`` detects a model whose frozen weights
differ from the ones the checkpoint was trained on (other pretrained weights,
or randomly initialised encoders built with another seed), up to float
rounding.
"""
import hashlib
import io
import json
import os
import os.path as osp
import pickle
import re
import warnings
from typing import (Any, Dict, Iterable, List, Mapping, MutableMapping,
                    Optional, Sequence, Set, Tuple, Union)

import torch
from mmengine.model import is_model_wrapper
from torch import nn

from sera_mm.utils.checkpoint_safety import allow_mmengine_checkpoint_globals

PET_META_KEY = 'pet'
PET_FORMAT_VERSION = 2
#: Config keys whose string values name pretrained weights (hub ids or
#: local paths); recorded in ``meta['pet']['pretrained']``.
PRETRAINED_CFG_KEYS: Tuple[str, ...] = (
    'pretrained', 'pretrained_model_name_or_path', 'model_name_or_path',
    'checkpoint', 'weights', 'weights_path', 'pretrained_path', 'revision')
_CHECK_MODES = ('error', 'warn', 'ignore')


class CheckpointReadError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated or corrupt)."""


class UnsafeCheckpointError(CheckpointReadError):
    """A checkpoint asks to unpickle a callable (``torch.load`` with
    ``weights_only=True`` refused it before running anything)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's contents do not fit the model it is loaded into."""


def write_checkpoint_file(ckpt: Mapping[str, Any], dst: str,
                          force: bool = False,
                          src: Optional[str] = None) -> str:
    """Write a checkpoint dict to a new file, atomically; returns the
    SHA-256 of the bytes written.

    Raises:
        FileExistsError: ``dst`` exists and ``force`` is False.
        ValueError: ``src`` (the file the checkpoint was read from) and
            ``dst`` are the same file.
    """
    if osp.exists(dst) and src is not None and osp.exists(src) and \
            osp.samefile(src, dst):
        raise ValueError(f'source and destination are the same file: {dst}')
    if osp.exists(dst) and not force:
        raise FileExistsError(f'{dst} exists; pass --force to replace it')
    from sera_mm.utils.file_io import atomic_write_bytes
    buf = io.BytesIO()
    torch.save(dict(ckpt), buf)
    data = buf.getvalue()
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    atomic_write_bytes(data, dst)
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------
def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP/MMDistributedDataParallel wrapper."""
    return model.module if is_model_wrapper(model) else model


def read_checkpoint(filename: str,
                    map_location: Union[str, torch.device] = 'cpu'
                    ) -> Dict[str, Any]:
    """Read a checkpoint file into a dict with a ``state_dict`` key.

    Uses ``torch.load(weights_only=True)``, after allowing the extra
    classes mmengine stores in ``meta``
    (``allow_mmengine_checkpoint_globals``, idempotent;
    :func:`sera_mm.utils.setup_runtime` calls it too). A bare
    state dict (a mapping of tensors) is returned as
    ``{'state_dict': it, 'meta': {}}``.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        PermissionError: it cannot be opened (naming it).
        CheckpointReadError: the file is truncated, corrupt or not a torch
            checkpoint; the message names the file and its size.
        UnsafeCheckpointError: (a ``CheckpointReadError``) the file names a
            global outside the allowed list (e.g. ``posix.system``); it is
            refused before anything runs, naming the file and the global.
        CheckpointMismatchError: the file holds no state dict.
    """
    filename = os.fspath(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    allow_mmengine_checkpoint_globals()
    try:
        obj = torch.load(filename, map_location=map_location,
                         weights_only=True)
    except PermissionError:
        raise  # names the file; not a corrupt checkpoint
    except pickle.UnpicklingError as err:
        # weights_only refused a global (a function or class to call): a
        # crafted file, or one pickling objects beyond tensors and the
        # mmengine metadata sera_mm allows
        found = re.search(r'GLOBAL ([\w.]+)', str(err))
        what = f'the global {found.group(1)}' if found else \
            'a global outside the allowed list'
        raise UnsafeCheckpointError(
            f'refused to load checkpoint "{filename}": it asks to unpickle '
            f'{what}; expected tensors and plain data only (a weights file '
            'never names a callable: the file is not a plain checkpoint or '
            'was tampered with); nothing in it was run') from err
    except Exception as err:  # torch raises several types for bad files
        size = osp.getsize(filename)
        raise CheckpointReadError(
            f'cannot read checkpoint "{filename}" ({size} bytes): the file '
            'is truncated, corrupt or not a torch checkpoint '
            f'({type(err).__name__}: {err})') from err
    if not isinstance(obj, MutableMapping):
        raise CheckpointMismatchError(
            f'checkpoint "{filename}" should hold a dict, got {type(obj)}')
    if 'state_dict' not in obj:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {'state_dict': obj, 'meta': {}}
        raise CheckpointMismatchError(
            f'checkpoint "{filename}" has no "state_dict"; keys: '
            f'{sorted(obj)}')
    obj.setdefault('meta', {})
    return obj


def is_pet_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Whether ``checkpoint`` (a dict from :func:`read_checkpoint`) is PET."""
    meta = checkpoint.get('meta') or {}
    return isinstance(meta, Mapping) and PET_META_KEY in meta


def strip_prefix(state_dict: Mapping[str, torch.Tensor],
                 prefix: str = 'module.') -> Dict[str, torch.Tensor]:
    """Drop a DDP ``module.`` prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v
            for k, v in state_dict.items()}


# --------------------------------------------------------------------------
# What a PET checkpoint holds
# --------------------------------------------------------------------------
def trainable_keys(model: nn.Module) -> List[str]:
    """State-dict names of the parameters with ``requires_grad=True``
    (every name of a tied parameter), sorted."""
    model = unwrap_model(model)
    return sorted(
        name for name, p in model.named_parameters(remove_duplicate=False)
        if p.requires_grad)


def buffer_keys(model: nn.Module) -> Set[str]:
    """State-dict names of the model's persistent buffers."""
    model = unwrap_model(model)
    state_keys = set(model.state_dict().keys())
    return {name for name, _ in model.named_buffers(remove_duplicate=False)
            if name in state_keys}


def state_digest(state: Mapping[str, torch.Tensor],
                 keys: Optional[Iterable[str]] = None) -> str:
    """SHA-256 over ``keys`` (default: all) of ``state`` in sorted order:
    each entry contributes its name, dtype, shape and raw bytes, so equal
    digests mean bit-identical tensors."""
    sha = hashlib.sha256()
    for key in sorted(state.keys() if keys is None else keys):
        tensor = state[key].detach().cpu().contiguous()
        sha.update(f'{key}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        if tensor.numel():
            sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def collect_pretrained_sources(
        model_cfg: Any,
        cfg_keys: Sequence[str] = PRETRAINED_CFG_KEYS) -> Dict[str, str]:
    """Find the pretrained-weight ids/paths in a model config.

    Args:
        model_cfg: the ``model`` config (nested dicts/lists).
        cfg_keys: key names whose non-empty string values are recorded.

    Returns:
        ``{'dotted.config.path': value}``, e.g.
        ``{'backbone.model_name_or_path': 'facebook/dinov2-base'}``.
    """
    found: Dict[str, str] = {}

    def visit(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                sub = f'{path}.{key}' if path else str(key)
                if key in cfg_keys and isinstance(value, str) and value:
                    found[sub] = value
                else:
                    visit(value, sub)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f'{path}[{i}]')

    visit(model_cfg, '')
    return found


def config_digest(model_cfg: Any) -> str:
    """SHA-256 of the model config serialised as sorted JSON."""
    if hasattr(model_cfg, 'to_dict'):
        model_cfg = model_cfg.to_dict()
    text = json.dumps(model_cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def make_pet_checkpoint_state(
        model: nn.Module,
        state_dict: Mapping[str, torch.Tensor],
        extra_buffer_keys: Iterable[str] = (),
        model_cfg: Any = None,
        cfg_keys: Sequence[str] = PRETRAINED_CFG_KEYS
) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Filter a full state dict down to its PET part.

    Args:
        model: the trained model (wrapped or not); its ``requires_grad``
            flags decide what is trainable.
        state_dict: the model's full state dict (e.g. the one mmengine's
            Runner put into the checkpoint).
        extra_buffer_keys: buffers to keep besides the trainable
            parameters (those that changed in training).
        model_cfg: the model config, for ``pretrained`` and
            ``config_digest``; None records neither.
        cfg_keys: see :func:`collect_pretrained_sources`.

    Returns:
        ``(pet_state_dict, pet_meta)``; ``pet_meta`` goes to
        ``checkpoint['meta']['pet']``.

    Raises:
        KeyError: a trainable parameter or an extra buffer is missing from
            ``state_dict``.
    """
    state_dict = strip_prefix(state_dict)
    train_keys = trainable_keys(model)
    extra = sorted(set(extra_buffer_keys) - set(train_keys))
    missing = [k for k in train_keys + extra if k not in state_dict]
    if missing:
        raise KeyError(f'state_dict lacks {len(missing)} keys the PET '
                       f'checkpoint must hold: {missing}')
    keep = set(train_keys) | set(extra)
    pet_state = {k: v for k, v in state_dict.items() if k in keep}
    meta = dict(
        format_version=PET_FORMAT_VERSION,
        pretrained=(collect_pretrained_sources(model_cfg, cfg_keys)
                    if model_cfg is not None else {}),
        trainable_keys=train_keys,
        buffer_keys=extra,
        model_class=type(unwrap_model(model)).__name__,
        config_digest=(config_digest(model_cfg)
                       if model_cfg is not None else None),
        base_fingerprint=state_fingerprint(
            state_dict, [k for k in state_dict if k not in keep]),
    )
    return pet_state, meta


#: Default relative tolerance of the base-weight check (see
#: :func:`compare_fingerprints`).
BASE_RTOL = 1e-3


def state_fingerprint(state: Mapping[str, torch.Tensor],
                      keys: Iterable[str]) -> Dict[str, List[Any]]:
    """Cheap per-tensor fingerprints: ``{key: [shape, dtype, sum, sum of
    squares]}`` (sums in float64, computed where the tensor lives, so a GPU
    model is not copied to the host). Two sets of weights whose
    fingerprints agree within a small relative tolerance are the same
    weights up to float rounding (e.g. an OpenAI CLIP ``.pt`` converted
    beside the hub's copy)."""
    out: Dict[str, List[Any]] = {}
    with torch.no_grad():
        for key in sorted(keys):
            t = state[key].detach()
            if t.is_floating_point() or t.is_complex():
                t64 = t.double()
                sums = [float(t64.sum()), float((t64 * t64).sum())]
            else:
                t64 = t.long() if t.numel() else t
                sums = [float(t64.sum()) if t.numel() else 0.0,
                        float((t64 * t64).sum()) if t.numel() else 0.0]
            out[key] = [list(t.shape), str(t.dtype)] + sums
    return out


def compare_fingerprints(expected: Mapping[str, Sequence[Any]],
                         actual: Mapping[str, Sequence[Any]],
                         rtol: float = BASE_RTOL) -> List[str]:
    """Keys whose fingerprints differ (shape, dtype, or a sum beyond
    ``rtol`` relative to the sum of squares' scale); keys the model lacks
    are reported, keys only the model has (parts added since) are not."""
    bad = []
    for key, exp in expected.items():
        got = actual.get(key)
        if got is None:
            bad.append(f'{key} (not in the model)')
            continue
        if list(exp[0]) != list(got[0]) or exp[1] != got[1]:
            bad.append(f'{key} (shape/dtype {exp[0]} {exp[1]} vs '
                       f'{got[0]} {got[1]})')
            continue
        numel = max(1, int(torch.tensor(exp[0]).prod().item()) if exp[0]
                    else 1)
        scale = (max(abs(exp[3]), abs(got[3])) / numel) ** 0.5 * numel
        for e, g in zip(exp[2:], got[2:]):
            tol = rtol * max(scale, abs(e), abs(g), 1e-12)
            if abs(e - g) > tol:
                bad.append(key)
                break
    return bad


# --------------------------------------------------------------------------
# Checking and loading
# --------------------------------------------------------------------------
#: at most this many entries of one kind are named in a mismatch message
MAX_KEYS_SHOWN = 8


def _top_module(entry: str) -> str:
    """The top-level module of an entry ('neck' for 'neck.fuse.gn.bias' or
    'neck.fuse.gn.bias: checkpoint (96,) vs model (64,)')."""
    return entry.split(':', 1)[0].split('.', 1)[0]


def _key_group(entry: str) -> str:
    """The module an entry belongs to: its key up to the first numeric part
    ('backbone.adapters.1'), else without its last part ('neck.fuse.gn')."""
    parts = entry.split(':', 1)[0].split('.')
    for i, part in enumerate(parts):
        if part.isdigit():
            return '.'.join(parts[:i + 1])
    return '.'.join(parts[:-1])


def _format_keys(title: str, keys: Sequence[str],
                 limit: int = MAX_KEYS_SHOWN) -> str:
    """One line naming ``keys``; past ``limit``, one entry per top-level
    module first, then one per module (so the parts with a problem show
    up), then the next entries in order, and the count left out."""
    head = f'  - {len(keys)} {title}: '
    if len(keys) <= limit:
        return head + ', '.join(keys)
    shown: List[str] = []
    for group_of in (_top_module, _key_group):
        seen = {group_of(k) for k in shown}
        for key in keys:
            if len(shown) < limit and key not in shown and (
                    group_of(key) not in seen):
                seen.add(group_of(key))
                shown.append(key)
    shown += [k for k in keys if k not in shown][:limit - len(shown)]
    shown.sort()
    return head + ', '.join(shown) + f', ... ({len(keys) - len(shown)} more)'


def check_state_fits_model(model: nn.Module,
                           state: Mapping[str, torch.Tensor],
                           partial: bool,
                           source: str = 'checkpoint') -> None:
    """Raise if ``state`` does not fit ``model``.

    Args:
        model: target model (wrapped or not).
        state: the checkpoint's state dict (no ``module.`` prefix).
        partial: True for a PET checkpoint (frozen parameters and buffers
            may be absent), False for a full one (every key must be there).
        source: how the message names the checkpoint (its path).

    Raises:
        CheckpointMismatchError: naming the keys the model lacks, the
            shape mismatches and the required keys the checkpoint lacks
            (each kind counted; past ``MAX_KEYS_SHOWN`` entries, one per
            module first).
    """
    model = unwrap_model(model)
    model_state = model.state_dict()
    unexpected = sorted(k for k in state if k not in model_state)
    mismatched = sorted(
        f'{k}: checkpoint {tuple(v.shape)} vs model '
        f'{tuple(model_state[k].shape)}' for k, v in state.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape))
    if partial:
        required = trainable_keys(model)
        missing_title = 'trainable parameters of the model missing from it'
    else:
        required = list(model_state.keys())
        missing_title = 'keys of the model missing from it'
    missing = sorted(k for k in required if k not in state)
    if not (unexpected or mismatched or missing):
        return
    from .checkpoint_upgrade import legacy_hint
    hint = legacy_hint(model, state)
    lines = [f'{source} does not fit the model {type(model).__name__} ' +
             (f'({hint}):' if hint else
              '(is it a checkpoint of another config?):')]
    if unexpected:
        lines.append(_format_keys('keys not in the model', unexpected))
    if mismatched:
        lines.append(_format_keys('shape mismatches', mismatched))
    if missing:
        lines.append(_format_keys(missing_title, missing))
    raise CheckpointMismatchError('\n'.join(lines))


def check_base_digest(model: nn.Module,
                      state: Mapping[str, torch.Tensor],
                      pet_meta: Mapping[str, Any],
                      mode: str = 'error',
                      source: str = 'checkpoint',
                      rtol: float = BASE_RTOL) -> bool:
    """Compare the model's weights outside the PET checkpoint with the ones
    it was trained on.

    Checkpoints record per-tensor fingerprints (:func:`state_fingerprint`;
    cheap, no host copy): weights equal up to ``rtol`` pass, so the same
    weights from another source (an OpenAI ``.pt`` against the hub's copy)
    are accepted; entries the model gained since the checkpoint was written
    (new buffers) are not compared. A format-1 checkpoint (an exact
    ``base_digest`` instead) is refused with the command that upgrades it.
    Weights that really differ can be accepted on purpose with
    ``mode='warn'`` (``--check-base warn``).

    Args:
        model: target model, built with its pretrained weights.
        state: the PET state dict.
        pet_meta: ``checkpoint['meta']['pet']``.
        mode: 'error' raises, 'warn' warns, 'ignore' skips the check.
        source: how the message names the checkpoint.

    Returns:
        True if the digests match (or there is none to check).

    Raises:
        ValueError: ``mode`` is not one of 'error'/'warn'/'ignore'.
        CheckpointMismatchError: the digests differ and ``mode='error'``.
    """
    if mode not in _CHECK_MODES:
        raise ValueError(f'check mode must be one of {_CHECK_MODES}, '
                         f'got {mode!r}')
    fingerprint = pet_meta.get('base_fingerprint')
    expected = pet_meta.get('base_digest')
    if mode == 'ignore' or not (fingerprint or expected):
        return True
    if not fingerprint:
        from .checkpoint_upgrade import legacy_hint
        raise CheckpointMismatchError(
            f'{source}: {legacy_hint(model, state, pet_meta)}')
    model_state = unwrap_model(model).state_dict()
    actual_fp = state_fingerprint(
        model_state, [k for k in fingerprint if k in model_state])
    bad = compare_fingerprints(fingerprint, actual_fp, rtol)
    if not bad:
        return True
    what = (f'{len(bad)} of {len(fingerprint)} frozen tensors differ '
            f'beyond rtol={rtol:g}, e.g. {", ".join(bad[:3])}')
    msg = (f'{source}: the model\'s frozen weights differ from those the PET '
           f'checkpoint was trained on ({what}); build the model with the '
           f'pretrained weights {dict(pet_meta.get("pretrained") or {})} '
           '(randomly initialised encoders need the training seed), or '
           "accept them with check_base='warn' / --check-base warn")
    if mode == 'error':
        raise CheckpointMismatchError(msg)
    warnings.warn(msg)
    return False


def _resolve(checkpoint: Union[str, Mapping[str, Any]],
             source: Optional[str]) -> Tuple[Dict[str, Any], str]:
    if isinstance(checkpoint, (str, os.PathLike)):
        return read_checkpoint(checkpoint), f'checkpoint "{checkpoint}"'
    if not isinstance(checkpoint, Mapping) or 'state_dict' not in checkpoint:
        raise CheckpointMismatchError(
            'checkpoint must be a file path or a dict with "state_dict", got '
            f'{type(checkpoint)}')
    return dict(checkpoint), source or 'checkpoint'


def load_pet_checkpoint(model: nn.Module,
                        checkpoint: Union[str, Mapping[str, Any]],
                        check_base: str = 'error',
                        source: Optional[str] = None) -> Dict[str, Any]:
    """Merge a PET checkpoint into a model built with its pretrained weights.

    Args:
        model: the model (wrapped or not), built from the same config.
        checkpoint: a file path or a dict from :func:`read_checkpoint`.
        check_base: what a base-weight digest mismatch does: 'error',
            'warn' or 'ignore' (see :func:`check_base_digest`).
        source: how messages name a checkpoint given as a dict.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError, CheckpointReadError: see :func:`read_checkpoint`.
        CheckpointMismatchError: not a PET checkpoint, or it does not fit
            the model (every offending key listed), or its base weights
            differ (``check_base='error'``).
    """
    ckpt, source = _resolve(checkpoint, source)
    if not is_pet_checkpoint(ckpt):
        raise CheckpointMismatchError(
            f'{source} is not a PET checkpoint (no meta["{PET_META_KEY}"]); '
            'load it with load_full_checkpoint')
    state = strip_prefix(ckpt['state_dict'])
    check_state_fits_model(model, state, partial=True, source=source)
    check_base_digest(model, state, ckpt['meta'][PET_META_KEY],
                      mode=check_base, source=source)
    unwrap_model(model).load_state_dict(state, strict=False)
    return ckpt


def load_full_checkpoint(model: nn.Module,
                         checkpoint: Union[str, Mapping[str, Any]],
                         source: Optional[str] = None) -> Dict[str, Any]:
    """Load a full checkpoint strictly (every key, every shape).

    Raises:
        FileNotFoundError, CheckpointReadError: see :func:`read_checkpoint`.
        CheckpointMismatchError: counting and naming the offending keys.
    """
    ckpt, source = _resolve(checkpoint, source)
    state = strip_prefix(ckpt['state_dict'])
    check_state_fits_model(model, state, partial=False, source=source)
    unwrap_model(model).load_state_dict(state, strict=True)
    return ckpt


def load_checkpoint_any(model: nn.Module,
                        checkpoint: Union[str, Mapping[str, Any]],
                        check_base: str = 'error',
                        source: Optional[str] = None) -> Dict[str, Any]:
    """Load a PET or a full checkpoint, told apart by ``meta['pet']``.

    Args:
        source: how messages name a checkpoint given as a dict (e.g.
            ``'checkpoint "<path>"'``; a path names itself).

    Returns:
        The checkpoint dict.
    """
    ckpt, source = _resolve(checkpoint, source)
    if is_pet_checkpoint(ckpt):
        return load_pet_checkpoint(model, ckpt, check_base, source=source)
    return load_full_checkpoint(model, ckpt, source=source)
