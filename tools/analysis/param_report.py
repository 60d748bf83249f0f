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

from sera_mm.utils.cli import add_debug_argument, run_cli
from sera_mm.utils.param_report import parameter_report

__all__ = ['parameter_report', 'format_report']


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
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    from sera_mm.utils import setup_runtime
    setup_runtime()  # mmcv.ops fallback, checkpoint safe globals
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
    run_cli(main)
