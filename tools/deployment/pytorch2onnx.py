"""Export a SERA-MM model (full or PET checkpoint) to ONNX, with its
tokenizer beside it, and check the export against PyTorch.

Examples::

    python tools/deployment/pytorch2onnx.py \
        configs/sera/sera_mnv2-minilm_synthetic_2h.py \
        checkpoints/sera_mnv2-minilm_synthetic_pet.pth --out model.onnx
    python tools/deployment/pytorch2onnx.py CONFIG CKPT --out m.onnx \
        --size 416 --text-len 17 --no-check

Writes ``model.onnx`` and ``model.tokenizer/`` (``tokenizer.json`` and
settings). Graph inputs: ``input_ids`` and ``attention_mask`` (B or 1, L)
int64 from the saved tokenizer, ``image`` (B or 1, 3, S, S) float32: the
letterboxed image, RGB, raw 0-255 (the mean/std normalisation is in the
graph). Outputs: ``logits`` (B, 1, S, S) at the letterboxed size, the
routers' weights and gates, and ``no_target_score`` for models with a
no-target head. The config, input size, text length, opset and the
pre-/post-processing are recorded in the model's ``metadata_props``
(``sera_mm.*``, JSON). Run the result with
``tools/deployment/onnx_infer.py`` (ONNX Runtime only).

After the export (unless ``--no-check``) ONNX Runtime and PyTorch are run on
a few images and expressions; the max |logit difference|, the mask IoU, the
token ids and the routing weights are compared and printed, and the tool
fails (exit status 1) when they disagree (``--atol``, ``--min-iou``).
"""
import argparse
import os.path as osp
import warnings
from typing import List, Optional

from sera_mm.utils import setup_runtime

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from mmengine.config import DictAction  # noqa: E402

from sera_mm.apis import init_model  # noqa: E402
from sera_mm.deployment.export import (  # noqa: E402
    DEFAULT_OPSET, check_onnx_parity, export_onnx)
from sera_mm.utils.cli import (add_check_base_argument,  # noqa: E402
                               add_debug_argument, run_cli)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a SERA-MM model to ONNX (+ tokenizer files) and '
        'check it against PyTorch')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (full or PET); '
                        '"none" exports the config\'s initial weights (e.g. '
                        'a random-init geometry for latency measurements)')
    parser.add_argument('--out', default='model.onnx',
                        help='output .onnx file (the tokenizer goes to '
                        '<out without .onnx>.tokenizer/)')
    parser.add_argument('--size', type=int, default=None,
                        help='input side S (default: the test pipeline\'s '
                        'Letterbox size)')
    parser.add_argument('--text-len', type=int, default=None,
                        help='tokens per expression (default: the text '
                        'encoder\'s max_length)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset (default {DEFAULT_OPSET})')
    parser.add_argument('--dynamo', action='store_true',
                        help='use the torch.export-based exporter (needs '
                        'onnxscript) instead of the TorchScript one')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the ONNX Runtime / PyTorch parity check')
    parser.add_argument('--atol', type=float, default=1e-3,
                        help='parity: limit of the max |logit difference|')
    parser.add_argument('--min-iou', type=float, default=0.99,
                        help='parity: limit of the mask IoU')
    parser.add_argument('--threads', type=int, default=2,
                        help='threads of PyTorch and ONNX Runtime')
    parser.add_argument('--device', default='cpu', help='e.g. cpu')
    add_check_base_argument(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not args.out.endswith('.onnx'):
        parser.error(f'--out must end with .onnx, got {args.out!r}')
    if args.size is not None and args.size < 32:
        parser.error(f'--size must be >= 32, got {args.size}')
    if args.text_len is not None and args.text_len < 3:
        parser.error(f'--text-len must be >= 3, got {args.text_len}')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(max(1, args.threads))
    checkpoint = None if args.checkpoint.lower() == 'none' else \
        args.checkpoint
    model = init_model(args.config, checkpoint, device=args.device,
                       cfg_options=args.cfg_options,
                       check_base=args.check_base)
    with warnings.catch_warnings():
        # tracing reports every Python-side shape check it folds
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', module=r'torch\.onnx')
        result = export_onnx(model, args.out, size=args.size,
                             text_len=args.text_len, opset=args.opset,
                             config=args.config, checkpoint=checkpoint,
                             dynamo=args.dynamo)
    meta = result.metadata
    mib = osp.getsize(result.onnx_path) / 2**20
    print(f'exported {result.onnx_path} ({mib:.1f} MiB, '
          f'{result.seconds:.1f} s): input {meta["input_size"]}x'
          f'{meta["input_size"]}, {meta["text_len"]} tokens, opset '
          f'{meta["opset"]}; inputs {result.input_names}; '
          f'{len(result.output_names)} outputs; tokenizer in '
          f'{result.tokenizer_dir}')
    summary = dict(onnx=result.onnx_path, tokenizer=result.tokenizer_dir,
                   metadata=meta, parity=None)
    if args.no_check:
        return summary
    report = check_onnx_parity(model, args.out, atol=args.atol,
                               min_iou=args.min_iou, threads=args.threads)
    print('\n'.join(report.lines()))
    summary['parity'] = report
    if not report.ok:
        raise RuntimeError('ONNX parity check failed: ' +
                           '; '.join(report.failures))
    return summary


if __name__ == '__main__':
    run_cli(main)
