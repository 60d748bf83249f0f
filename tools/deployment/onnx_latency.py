"""CPU latency of an exported model in ONNX Runtime beside the PyTorch model
it came from, measured in one process, alternating the two.

Example (2 threads, batch 1, 20 timed runs after 3 warm-up runs each)::

    python tools/deployment/onnx_latency.py \
        configs/sera/sera_mnv2-minilm_synthetic_2h.py \
        checkpoints/sera_mnv2-minilm_synthetic_pet.pth model.onnx \
        --threads 2 --runs 20

Two measurements per run, each PyTorch then ONNX Runtime:

* ``forward``: the graph alone on prepared inputs (token ids + mask +
  letterboxed image -> letterboxed logits and routing): PyTorch runs
  :class:`~sera_mm.deployment.export.SERAOnnxWrapper` (the model's own
  modules) under ``torch.inference_mode``, ONNX Runtime the exported graph;
* ``end-to-end``: image array + expression -> mask at the image's
  resolution: :func:`sera_mm.apis.inference_model` (the text encoder's
  feature cache off, so both sides encode the expression every time)
  against :meth:`OnnxReferSegmenter.predict` (numpy letterbox, tokenizer,
  ONNX Runtime, numpy post-processing).

Prints min / median / max in milliseconds and the median ratio; the load
average before and after is printed too (other processes on the machine
slow both sides). Idle threads of both runtimes sleep instead of spinning
(``OMP_WAIT_POLICY=PASSIVE`` unless set, ONNX Runtime's
``session.intra_op.allow_spinning=0``), so neither steals the cores while
the other runs.
"""
import argparse
import json
import os

# Neither runtime may keep cores busy while the other runs: OpenMP
# (PyTorch) threads sleep when idle (set before torch is imported), ONNX
# Runtime's pool does not spin (see main).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Callable, Dict, List, Optional  # noqa: E402

from sera_mm.utils import setup_runtime  # noqa: E402

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from mmengine.config import DictAction  # noqa: E402

from sera_mm.apis import (inference_model, init_model,  # noqa: E402
                          load_image)
from sera_mm.apis.inference import build_inference_pipeline  # noqa: E402
from sera_mm.deployment.export import (  # noqa: E402
    SERAOnnxWrapper, default_parity_inputs, text_length)
from sera_mm.deployment.onnx_runtime import OnnxReferSegmenter  # noqa: E402
from sera_mm.utils.cli import (add_check_base_argument,  # noqa: E402
                               add_debug_argument, run_cli)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='CPU latency: ONNX Runtime beside PyTorch')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint (full or PET); '
                        '"none" for the config\'s initial weights')
    parser.add_argument('model', help='.onnx file exported from them')
    parser.add_argument('--image', help='image file (default: a synthetic '
                        'scene)')
    parser.add_argument('--text', default='the red circle on the left',
                        help='the expression')
    parser.add_argument('--runs', type=int, default=20,
                        help='timed runs of each (>= 10 recommended)')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed runs of each first')
    parser.add_argument('--threads', type=int, default=2,
                        help='intra-op threads of both')
    parser.add_argument('--no-end-to-end', action='store_true',
                        help='time the forward only')
    add_check_base_argument(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--json', help='also write the figures here')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('--runs and --threads must be >= 1, --warmup >= 0')
    return args


def _stats(times: List[float]) -> Dict[str, float]:
    ms = [t * 1000 for t in times]
    return dict(min=min(ms), median=statistics.median(ms), max=max(ms),
                runs=len(ms))


def time_alternating(fns: Dict[str, Callable[[], object]], runs: int,
                     warmup: int) -> Dict[str, Dict[str, float]]:
    """Warm each function up, then call them in turn ``runs`` times,
    timing each call (``time.perf_counter``)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: _stats(v) for k, v in times.items()}


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    load_before = os.getloadavg()
    ckpt = None if args.checkpoint.lower() == 'none' else args.checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = init_model(args.config, ckpt, cfg_options=args.cfg_options,
                           check_base=args.check_base)
    seg = OnnxReferSegmenter(args.model, threads=args.threads,
                             spinning=False)
    if args.image:
        img, _ = load_image(args.image)
    else:
        img = default_parity_inputs()[0][1]
    texts = [args.text]
    tensor, _ = seg.preprocess(img)
    enc = seg.tokenizer(texts)
    device = next(model.parameters()).device
    ids_t = torch.from_numpy(enc['input_ids']).to(device)
    mask_t = torch.from_numpy(enc['attention_mask']).to(device)
    img_t = torch.from_numpy(tensor).to(device)
    wrapper = SERAOnnxWrapper(model, seg.size).eval()
    encoder = model.text_encoder
    cache_size = encoder.cache_size
    encoder.set_cache_size(0)
    pipeline = build_inference_pipeline(model, seg.size)

    def torch_forward():
        with torch.inference_mode():
            return wrapper(ids_t, mask_t, img_t)

    def ort_forward():
        return seg.run(enc['input_ids'], enc['attention_mask'], tensor)

    fns = {'pytorch forward': torch_forward, 'onnxruntime forward':
           ort_forward}
    if not args.no_end_to_end:
        fns['pytorch end-to-end'] = lambda: inference_model(
            model, img, texts, pipeline=pipeline)
        fns['onnxruntime end-to-end'] = lambda: seg.predict(img, texts)
    try:
        with text_length(model, seg.tokenizer.max_length):
            results = time_alternating(fns, args.runs, args.warmup)
    finally:
        encoder.set_cache_size(cache_size)
    load_after = os.getloadavg()
    size = seg.size
    print(f'{args.model}: input {size}x{size}, {seg.tokenizer.max_length} '
          f'tokens, batch 1, {args.threads} threads, {args.runs} runs after '
          f'{args.warmup} warm-up runs each, alternating; torch '
          f'{torch.__version__}, onnxruntime '
          f'{__import__("onnxruntime").__version__}')
    print(f'load average before {load_before[0]:.2f}, after '
          f'{load_after[0]:.2f} (1 min); OMP_WAIT_POLICY='
          f'{os.environ.get("OMP_WAIT_POLICY")}, onnxruntime without '
          'spinning')
    print(f'{"":24} {"min ms":>9} {"median ms":>10} {"max ms":>9}')
    for name, s in results.items():
        print(f'{name:24} {s["min"]:9.1f} {s["median"]:10.1f} '
              f'{s["max"]:9.1f}')
    for kind in ('forward', 'end-to-end'):
        a, b = results.get(f'pytorch {kind}'), results.get(
            f'onnxruntime {kind}')
        if a and b:
            print(f'{kind}: onnxruntime median / pytorch median = '
                  f'{b["median"] / a["median"]:.2f}')
    summary = dict(model=args.model, config=args.config,
                   checkpoint=args.checkpoint, size=size,
                   text_len=seg.tokenizer.max_length, threads=args.threads,
                   runs=args.runs, warmup=args.warmup,
                   load_average=[load_before[0], load_after[0]],
                   torch=torch.__version__,
                   onnxruntime=__import__('onnxruntime').__version__,
                   results=results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == '__main__':
    run_cli(main)
