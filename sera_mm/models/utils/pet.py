"""Parameter-efficient tuning (PET) rules for pretrained encoders.

A rule decides which parameters of a pretrained module stay trainable:

* ``'norm_bias'``: freeze everything, then re-enable the parameters of
  normalisation layers (LayerNorm, BatchNorm*, GroupNorm) and every
  parameter whose name ends with ``bias``;
* ``'none'``: freeze everything (a fully frozen encoder);
* ``'all'``: train everything (full fine-tuning);
* ``'re:<regex>'``: freeze everything, then re-enable parameters whose
  qualified name matches the regex (``re.search``);
* a callable ``(name, param) -> bool``: re-enable those it returns True for.
"""
import re
from typing import Callable, Dict, Union

import torch.nn as nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm,
              nn.modules.instancenorm._InstanceNorm)

PETRule = Union[str, Callable[[str, nn.Parameter], bool], None]


def _norm_param_names(module: nn.Module) -> set:
    names = set()
    for mod_name, mod in module.named_modules():
        if isinstance(mod, NORM_TYPES):
            for p_name, _ in mod.named_parameters(recurse=False):
                names.add(f'{mod_name}.{p_name}' if mod_name else p_name)
    return names


def build_pet_predicate(rule: PETRule) -> Callable[[str, nn.Parameter],
                                                    bool]:
    """Return ``f(name, param) -> bool`` (True = trainable) for ``rule``.

    The 'norm_bias' predicate needs the module; it is built by
    :func:`apply_pet`. Here 'norm_bias' only matches ``*bias`` names.
    """
    if callable(rule):
        return rule
    if rule is None or rule == 'none':
        return lambda name, param: False
    if rule == 'all':
        return lambda name, param: True
    if rule == 'norm_bias':
        return lambda name, param: name.endswith('bias')
    if isinstance(rule, str) and rule.startswith('re:'):
        pattern = re.compile(rule[3:])
        return lambda name, param: pattern.search(name) is not None
    raise ValueError(
        f"trainable rule must be 'norm_bias', 'none', 'all', 're:<regex>' or "
        f'a callable(name, param) -> bool, got {rule!r}')


def apply_pet(module: nn.Module, rule: PETRule = 'norm_bias') -> None:
    """Set ``requires_grad`` of every parameter of ``module`` by ``rule``.

    Args:
        module: the (pretrained) module to tune.
        rule: see the module docstring.
    """
    predicate = build_pet_predicate(rule)
    norm_names = _norm_param_names(module) if rule == 'norm_bias' else set()
    for name, param in module.named_parameters():
        param.requires_grad_(name in norm_names or bool(predicate(name,
                                                                  param)))


def count_parameters(module: nn.Module) -> Dict[str, int]:
    """Count parameters: ``dict(total=..., trainable=...)`` (elements)."""
    total = trainable = 0
    for param in module.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return dict(total=total, trainable=trainable)


def freeze_bn_stats(module: nn.Module) -> nn.Module:
    """Put every BatchNorm layer of ``module`` in eval mode.

    Their running statistics then stay as pretrained (and the batch
    statistics of small RIS batches are not used). Call it at the end of
    a wrapper's ``train()``. Returns ``module``.
    """
    for mod in module.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.eval()
    return module
