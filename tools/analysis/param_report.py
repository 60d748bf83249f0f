"""Parameter report of a SERA model: total, trainable, per module, and the
share of the pretrained encoders that is tuned.

    python tools/analysis/param_report.py CONFIG [--random-init]
        [--out report.md] [--cfg-options key=value ...]

The model is built from the config (weights as configured). With
``--random-init`` every ``pretrained`` entry is dropped so the architecture
is built with random weights (no download needed); without it, entries whose
weights are not available locally are dropped too, with a notice. Prints a
Markdown table and writes it to ``--out`` (default
``<work_dir or ./>param_report_<config name>.md``).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, Optional

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


def _fmt(n: int) -> str:
    return f'{n:,} ({n / 1e6:.2f} M)'


def format_report(report: Dict, title: Optional[str] = None) -> str:
    """Markdown text of :func:`parameter_report`'s dict."""
    lines = []
    if title:
        lines += [f'# Parameters: {title}', '']
    lines += [
        '| part | total | trainable |', '| --- | ---: | ---: |',
        f'| **model** | {_fmt(report["total"])} | '
        f'{_fmt(report["trainable"])} |'
    ]
    for name, c in report['modules'].items():
        lines.append(f'| {name} | {_fmt(c["total"])} | '
                     f'{_fmt(c["trainable"])} |')
    bb = report.get('backbone')
    if bb:
        lines.append(f'| backbone: pretrained encoder | '
                     f'{_fmt(bb["encoder_total"])} | '
                     f'{_fmt(bb["encoder_trainable"])} |')
        lines.append(f'| backbone: adapters | {_fmt(bb["adapters"])} | '
                     f'{_fmt(bb["adapters_trainable"])} |')
    lines += [
        '',
        f'Trainable share of the pretrained encoders (vision + text, '
        f'adapters excluded): {_fmt(report["encoder_trainable"])} / '
        f'{_fmt(report["encoder_total"])} = '
        f'**{100 * report["backbone_fraction"]:.3f}%**',
        f'Trainable share of the whole model: '
        f'{100 * report["trainable"] / max(report["total"], 1):.3f}%', ''
    ]
    return '\n'.join(lines)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--random-init',
        action='store_true',
        help='drop every pretrained entry (random weights, no download)')
    parser.add_argument('--out', help='Markdown file to write')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    import sera_mm  # noqa: F401 (mmcv.ops fallback before mmseg)
    from mmengine.config import Config

    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    from sera_mm.utils.config_utils import random_init_cfg
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model_cfg = random_init_cfg(cfg.model, force=args.random_init)
    if not args.random_init and model_cfg != cfg.model:
        print('note: pretrained weights not available locally were '
              'replaced by random init (architecture unchanged)',
              file=sys.stderr)
    model = MODELS.build(model_cfg)
    report = parameter_report(model)
    name = osp.splitext(osp.basename(args.config))[0]
    text = format_report(report, title=name)
    print(text)
    out = args.out or osp.join(cfg.get('work_dir') or '.',
                               f'param_report_{name}.md')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        f.write(text)
    print(f'written to {out}')
    return report


if __name__ == '__main__':
    main()
