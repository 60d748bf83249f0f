"""Parameter counts of a SERA-style model: total, trainable, per top-level
module, and the share of the pretrained encoders that is tuned (used by
``tools/analysis/param_report.py`` and the benchmark)."""
from typing import Dict

import torch.nn as nn

ADAPTER_KEY = 'adapters'


def _count(params) -> int:
    return int(sum(p.numel() for p in params))


def parameter_report(model: nn.Module) -> Dict:
    """Count the parameters of a SERA-style model.

    Args:
        model: a model with (some of) the children ``text_encoder``,
            ``backbone`` (whose ``adapters`` are counted apart), ``neck``,
            ``decode_head``.

    Returns:
        dict with ``total``, ``trainable``, ``modules`` (top-level child
        name -> {total, trainable}), ``backbone`` ({encoder_total,
        encoder_trainable, adapters}), ``text_encoder`` ({total,
        trainable}), ``encoder_total`` / ``encoder_trainable`` (vision +
        text, adapters excluded) and ``backbone_fraction`` =
        encoder_trainable / encoder_total (0 when there is no encoder).
    """
    params = list(model.parameters())
    report: Dict = dict(
        total=_count(params),
        trainable=_count(p for p in params if p.requires_grad),
        modules={})
    for name, child in model.named_children():
        ps = list(child.parameters())
        report['modules'][name] = dict(
            total=_count(ps),
            trainable=_count(p for p in ps if p.requires_grad))

    enc_total = enc_train = 0
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module):
        adapter_ids = set()
        adapters = getattr(backbone, ADAPTER_KEY, None)
        if isinstance(adapters, nn.Module):
            adapter_ids = {id(p) for p in adapters.parameters()}
        enc = [p for p in backbone.parameters() if id(p) not in adapter_ids]
        ad = [p for p in backbone.parameters() if id(p) in adapter_ids]
        report['backbone'] = dict(
            encoder_total=_count(enc),
            encoder_trainable=_count(p for p in enc if p.requires_grad),
            encoder_frozen=_count(p for p in enc if not p.requires_grad),
            adapters=_count(ad),
            adapters_trainable=_count(p for p in ad if p.requires_grad))
        enc_total += report['backbone']['encoder_total']
        enc_train += report['backbone']['encoder_trainable']
    text = getattr(model, 'text_encoder', None)
    if isinstance(text, nn.Module):
        ps = list(text.parameters())
        report['text_encoder'] = dict(
            total=_count(ps),
            trainable=_count(p for p in ps if p.requires_grad))
        enc_total += report['text_encoder']['total']
        enc_train += report['text_encoder']['trainable']
    report['encoder_total'] = enc_total
    report['encoder_trainable'] = enc_train
    report['backbone_fraction'] = (enc_train / enc_total) if enc_total else 0.0
    return report
