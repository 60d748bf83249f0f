"""Bring a checkpoint of an earlier SERA-MM release to the current layout.

Two things changed since the first checkpoints were written:

* the conv-norm-activation blocks became mmcv ``ConvModule`` s
  (:class:`~sera_mm.models.layers.ConvNormAct`): a block once stored as
  ``<block>.0.weight`` (conv) and ``<block>.1.*`` (norm) of an
  ``nn.Sequential``, or as a conv at ``<block>.*`` with its norm in the
  next slot of the parent ``nn.Sequential``, is now ``<block>.conv.*`` and
  ``<block>.<gn|bn>.*``;
* PET checkpoints of format 1 recorded an exact SHA-256 of the frozen
  weights (``base_digest``); format 2 records per-tensor fingerprints
  (``base_fingerprint``), which the loader checks.

:func:`upgrade_checkpoint` renames the keys (state dict and PET metadata)
and, for format 1, checks the digest against the model it is given (built
with its pretrained weights) before writing the fingerprints. The loader
does not guess: it names ``tools/model_converters/upgrade_checkpoint.py``
when it meets either layout (:func:`legacy_hint`).
"""
import copy
import re
from typing import Any, Dict, Iterable, List, Mapping, Tuple

from mmcv.cnn import ConvModule
from torch import nn

from .pet_checkpoint import (PET_FORMAT_VERSION, PET_META_KEY,
                             CheckpointMismatchError, state_digest,
                             state_fingerprint, strip_prefix, unwrap_model)

UPGRADE_TOOL = 'tools/model_converters/upgrade_checkpoint.py'
_NORM_ENTRIES = ('weight', 'bias', 'running_mean', 'running_var',
                 'num_batches_tracked')
#: Router buffers added after the first format-1 checkpoints: a format-1
#: digest was computed with or without them.
_ADDED_AFTER_FORMAT_1 = (re.compile(r'(^|\.)router\._temperature$'),
                         re.compile(r'(^|\.)routers\.\d+\._temperature$'))


def conv_block_key_map(model: nn.Module,
                       keys: Iterable[str]) -> Dict[str, str]:
    """Old -> new names of the conv-block entries among ``keys`` (only keys
    the model does not have are mapped)."""
    model = unwrap_model(model)
    keys = set(keys)
    current = set(model.state_dict())
    mapping: Dict[str, str] = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, ConvModule) or not prefix:
            continue
        norm = module.norm_name if module.with_norm else None
        layouts = [(prefix + '.0.', prefix + '.1.')]
        parent, _, index = prefix.rpartition('.')
        if index.isdigit():
            sibling = f'{parent}.{int(index) + 1}.' if parent else \
                f'{int(index) + 1}.'
            layouts.append((prefix + '.', sibling))
        for conv_old, norm_old in layouts:
            if conv_old + 'weight' not in keys or \
                    conv_old + 'weight' in current:
                continue
            for entry in ('weight', 'bias'):
                if conv_old + entry in keys:
                    mapping[conv_old + entry] = f'{prefix}.conv.{entry}'
            if norm is not None:
                for entry in _NORM_ENTRIES:
                    if norm_old + entry in keys:
                        mapping[norm_old + entry] = \
                            f'{prefix}.{norm}.{entry}'
            break
    return {old: new for old, new in mapping.items()
            if old not in current and new in current}


def legacy_hint(model: nn.Module, state: Mapping[str, Any],
                pet_meta: Mapping[str, Any] = None) -> str:
    """A sentence naming the upgrade tool when ``state`` / ``pet_meta``
    are of an earlier layout, else ''."""
    reasons = []
    if pet_meta is not None and pet_meta.get('base_digest') and \
            not pet_meta.get('base_fingerprint'):
        reasons.append('PET format 1')
    if conv_block_key_map(model, state):
        reasons.append('conv blocks stored before they were mmcv '
                       'ConvModules')
    if not reasons:
        return ''
    return (f'it was written by an earlier release ({"; ".join(reasons)}): '
            f'convert it once with python {UPGRADE_TOOL} CONFIG CHECKPOINT '
            'OUT')


def _check_format_1_digest(model_state: Mapping[str, Any],
                           state: Mapping[str, Any], expected: str) -> None:
    omitted = [k for k in model_state if k not in state]
    older = [k for k in omitted
             if not any(r.search(k) for r in _ADDED_AFTER_FORMAT_1)]
    if expected in (state_digest(model_state, older),
                    state_digest(model_state, omitted)):
        return
    raise CheckpointMismatchError(
        'the model\'s frozen weights differ from those the format-1 '
        'checkpoint was trained on (base digest mismatch): build the model '
        'from the checkpoint\'s config with its pretrained weights')


def upgrade_checkpoint(ckpt: Mapping[str, Any],
                       model: nn.Module) -> Tuple[Dict[str, Any], List[str]]:
    """The checkpoint in the current layout, and what was changed.

    Args:
        ckpt: a checkpoint dict (``state_dict`` and optional ``meta``), as
            :func:`~sera_mm.engine.pet_checkpoint.read_checkpoint` gives.
        model: the model of the checkpoint's config, built with its
            pretrained weights (a format-1 digest is checked against it).

    Returns:
        ``(new checkpoint, changes)``; ``changes`` is empty when the
        checkpoint already has the current layout.

    Raises:
        CheckpointMismatchError: a format-1 digest does not match the model.
    """
    out = copy.copy(dict(ckpt))
    state = strip_prefix(ckpt['state_dict'])
    mapping = conv_block_key_map(model, state)
    changes = []
    if mapping:
        state = {mapping.get(k, k): v for k, v in state.items()}
        changes.append(f'renamed {len(mapping)} conv-block entries '
                       '(e.g. ' + ', '.join(
                           f'{o} -> {n}'
                           for o, n in list(mapping.items())[:2]) + ')')
    out['state_dict'] = state
    meta = dict(out.get('meta') or {})
    pet = meta.get(PET_META_KEY)
    if pet is not None:
        pet = dict(pet)
        for field in ('trainable_keys', 'buffer_keys'):
            if field in pet:
                pet[field] = [mapping.get(k, k) for k in pet[field]]
        if pet.get('base_digest') and not pet.get('base_fingerprint'):
            model_state = unwrap_model(model).state_dict()
            _check_format_1_digest(model_state, state, pet['base_digest'])
            pet['base_fingerprint'] = state_fingerprint(
                model_state, [k for k in model_state if k not in state])
            del pet['base_digest']
            pet['format_version'] = PET_FORMAT_VERSION
            changes.append('PET format 1 -> 2 (base digest checked, '
                           'fingerprints written)')
        meta[PET_META_KEY] = pet
        out['meta'] = meta
    return out, changes
