"""Export a SERA segmentor to ONNX and check the export against PyTorch.

The segmentor tokenises expressions inside its text encoder; an ONNX graph
cannot hold the tokenizer, so :class:`SERAOnnxWrapper` takes token ids and
the attention mask (what ``text_encoder.tokenize`` gives) and runs
``text_encoder.encode_ids`` -> backbone -> neck -> head, plus the data
preprocessor's normalisation. The tokenizer is saved beside the ``.onnx``
file (``<name>.tokenizer/``: ``tokenizer.json`` + settings) for
:class:`~sera_mm.deployment.onnx_runtime.RuntimeTokenizer`. Inputs, outputs
and metadata are described in :mod:`sera_mm.deployment.onnx_runtime`.

:func:`check_onnx_parity` runs the PyTorch inference path
(:func:`sera_mm.apis.inference_model`) and the ONNX Runtime path
(:class:`~sera_mm.deployment.onnx_runtime.OnnxReferSegmenter`) on the same
images and expressions and compares tokens, logits, masks and routing.
"""
import copy
import json
import os
import os.path as osp
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from sera_mm.utils.image_io import load_image
from sera_mm.apis.inference import (build_inference_pipeline,
                                    inference_model, letterbox_settings)
from sera_mm.version import __version__
from sera_mm.visualization.refer_visualizer import mask_iou
from .onnx_runtime import (INPUT_NAMES, TOKENIZER_SETTINGS,
                           OnnxReferSegmenter)

DEFAULT_OPSET = 17
#: Expressions of the example input the graph is traced with (padded).
TRACE_TEXTS = ('the red circle on the left', 'a small blue square')


def _safe_name(name: str) -> str:
    return name.replace('.', '_')


class SERAOnnxWrapper(nn.Module):
    """The exportable forward of a ``SERASegmentor``.

    ``forward(input_ids, attention_mask, image)``: ids/mask (Bt, L) int64,
    image (Bi, 3, S, S) float32 RGB 0-255 letterboxed; Bt and Bi are equal
    or one of them is 1. Returns ``logits`` (B, 1, S, S) at the letterboxed
    size, then per router its weights and gates (B, E), then (with a
    no-target head) ``no_target_score`` (B,).

    Args:
        model: a ``SERASegmentor`` in eval mode.
        size: the letterbox side S.
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model = model
        self.size = int(size)
        dp = model.data_preprocessor
        mean = getattr(dp, 'mean', None)
        std = getattr(dp, 'std', None)
        self.normalize = bool(getattr(dp, '_enable_normalize', False))
        self.register_buffer(
            'mean', (mean.detach().float().reshape(1, -1, 1, 1)
                     if mean is not None else torch.zeros(1, 3, 1, 1)),
            persistent=False)
        self.register_buffer(
            'std', (std.detach().float().reshape(1, -1, 1, 1)
                    if std is not None else torch.ones(1, 3, 1, 1)),
            persistent=False)
        # the pipeline gives BGR; the preprocessor flips it when asked to,
        # so the model sees RGB with bgr_to_rgb and BGR otherwise
        self.model_wants_rgb = bool(getattr(dp, 'channel_conversion', False))
        self.routers = [(name, r) for name, r in model.routers()]
        self.output_names = ['logits']
        for name, _ in self.routers:
            self.output_names += [f'{_safe_name(name)}_weights',
                                  f'{_safe_name(name)}_gates']
        self.with_no_target = getattr(model.decode_head, 'no_target_head',
                                      None) is not None
        if self.with_no_target:
            self.output_names.append('no_target_score')

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                image: Tensor) -> Tuple[Tensor, ...]:
        # broadcast a batch of 1 on either side (Mul broadcasting in ONNX)
        image = image * torch.ones_like(input_ids[:, :1, None, None],
                                        dtype=image.dtype)
        ones = torch.ones_like(image[:, 0, 0, :1], dtype=input_ids.dtype)
        input_ids = input_ids * ones
        attention_mask = attention_mask * ones
        x = image if self.model_wants_rgb else image.flip(1)
        if self.normalize:
            x = (x - self.mean) / self.std
        model = self.model
        text = model.text_encoder.encode_ids(input_ids, attention_mask)
        grids = model.backbone(x, text)
        fused = model.neck(grids, text)
        raw = model.decode_head.forward((fused, text))
        shape = (self.size, self.size)
        logits = model.decode_head.predict_by_feat(
            raw, [dict(img_shape=shape, pad_shape=shape)])
        outs = [logits]
        for name, router in self.routers:
            if router.last_weights is None:
                raise RuntimeError(f'router {name} did not run in the '
                                   'forward; cannot export its weights')
            outs += [router.last_weights.float(), router.last_gates.float()]
        if self.with_no_target:
            outs.append(model.decode_head.no_target_head.predict(
                fused, text, raw))
        return tuple(outs)


def check_exportable(model: nn.Module) -> None:
    """Refuse what a traced graph cannot represent.

    Raises:
        ValueError: a router with top-k routing (its sparse expert execution
            picks experts with Python control flow, which tracing would fix
            to the example input's choice).
    """
    sparse = [name for name, r in model.routers()
              if r.top_k is not None and r.top_k < r.num_experts
              and r.mode != 'uniform']
    if sparse:
        raise ValueError(
            f'routers {sparse} use top-k routing, whose sparse expert '
            'execution cannot be traced into one ONNX graph; export a model '
            'with dense routing (top_k=None)')


@contextmanager
def text_length(model: nn.Module, text_len: int) -> Iterator[None]:
    """The text encoder tokenising to ``text_len`` tokens (its feature cache
    emptied when that changes the length); restored afterwards."""
    encoder = model.text_encoder
    saved = encoder.max_length
    changed = int(text_len) != saved
    encoder.max_length = int(text_len)
    if changed:  # cached features have the other length
        encoder.set_cache_size(encoder.cache_size)
    try:
        yield
    finally:
        encoder.max_length = saved
        if changed:
            encoder.set_cache_size(encoder.cache_size)


@contextmanager
def export_mode(model: nn.Module, text_len: int) -> Iterator[None]:
    """What tracing needs, restored afterwards: eval mode, the text
    encoder's length set to ``text_len`` (:func:`text_length`), the
    backbone's frozen-prefix cache off (it hashes the input in Python).
    The head's dynamic convolution needs no change: it has no batch-sized
    ``groups`` (:meth:`SERAHead.dynamic_conv`).

    Only the export runs inside it; :func:`check_onnx_parity` runs the
    PyTorch model as it is.
    """
    backbone = model.backbone
    was_training = model.training
    cache = getattr(backbone, 'prefix_cache', None)
    model.eval()
    if cache is not None:
        backbone.prefix_cache = None
    try:
        with text_length(model, text_len):
            yield
    finally:
        if cache is not None:
            backbone.prefix_cache = cache
        model.train(was_training)


def save_tokenizer(encoder: nn.Module, folder: str, text_len: int) -> str:
    """Save the text encoder's tokenizer (``tokenizer.json`` and the other
    transformers files) and :data:`TOKENIZER_SETTINGS` into ``folder``
    (replaced)."""
    tok = encoder.tokenizer
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    tok.save_pretrained(folder)
    if not osp.isfile(osp.join(folder, 'tokenizer.json')):
        backend = getattr(tok, 'backend_tokenizer', None)
        if backend is None:
            raise ValueError(f'{type(tok).__name__} is not backed by the '
                             'tokenizers library; cannot save tokenizer.json')
        backend.save(osp.join(folder, 'tokenizer.json'))
    settings = dict(
        encoder=type(encoder).__name__,
        max_length=int(text_len),
        pad_token=str(tok.pad_token),
        pad_token_id=int(tok.pad_token_id),
        pad_token_type_id=int(getattr(tok, 'pad_token_type_id', 0) or 0),
        padding_side=str(getattr(tok, 'padding_side', 'right')),
        truncation_side=str(getattr(tok, 'truncation_side', 'right')))
    with open(osp.join(folder, TOKENIZER_SETTINGS), 'w',
              encoding='utf-8') as f:
        json.dump(settings, f, indent=1)
    return folder


def tokenizer_dir_for(onnx_path: str) -> str:
    """``<dir>/<name>.tokenizer`` beside ``<dir>/<name>.onnx``."""
    return osp.splitext(onnx_path)[0] + '.tokenizer'


def _config_text(model: nn.Module) -> str:
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        return ''
    try:
        return cfg.pretty_text
    except Exception:  # noqa: BLE001 (yapf-less dumps)
        return str(cfg)


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""
    onnx_path: str
    tokenizer_dir: str
    metadata: Dict[str, Any]
    seconds: float
    input_names: List[str] = field(default_factory=list)
    output_names: List[str] = field(default_factory=list)


def export_onnx(model: nn.Module,
                onnx_path: str,
                size: Optional[int] = None,
                text_len: Optional[int] = None,
                opset: int = DEFAULT_OPSET,
                config: Optional[str] = None,
                checkpoint: Optional[str] = None,
                dynamo: bool = False) -> ExportResult:
    """Export ``model`` (from :func:`sera_mm.apis.init_model`) to
    ``onnx_path`` with its tokenizer beside it.

    Args:
        model: a ``SERASegmentor`` with ``.cfg``.
        onnx_path: output file.
        size: input side S (default: the pipeline's Letterbox size).
        text_len: tokens per expression (default: the text encoder's
            ``max_length``).
        opset: ONNX opset.
        config: config path, recorded in the metadata.
        checkpoint: checkpoint path, recorded in the metadata.
        dynamo: use the ``torch.export``-based exporter (needs onnxscript);
            default the TorchScript exporter.

    Returns:
        :class:`ExportResult`.

    Raises:
        ValueError: top-k routing (:func:`check_exportable`) or a pipeline
            without Letterbox and no ``size``.
    """
    import onnx
    check_exportable(model)
    box = letterbox_settings(model)
    if size is None:
        if box is None:
            raise ValueError('the inference pipeline has no Letterbox; give '
                             'the input size')
        size = box['size']
    box = dict(box or dict(pad_val=0, interpolation='bilinear'))
    box['size'] = int(size)
    encoder = model.text_encoder
    text_len = int(text_len or encoder.max_length)
    device = next(model.parameters()).device
    out_dir = osp.dirname(osp.abspath(onnx_path))
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    with export_mode(model, text_len):
        wrapper = SERAOnnxWrapper(model, size).eval()
        enc = encoder.tokenize(list(TRACE_TEXTS))
        ids, mask = enc['input_ids'], enc['attention_mask']
        image = torch.rand(1, 3, size, size, device=device) * 255
        names = wrapper.output_names
        dynamic = {n: {0: 'batch'} for n in INPUT_NAMES + tuple(names)}
        with torch.no_grad():
            torch.onnx.export(
                wrapper, (ids, mask, image), onnx_path,
                input_names=list(INPUT_NAMES), output_names=names,
                opset_version=opset, dynamic_axes=dynamic,
                do_constant_folding=True, dynamo=dynamo)
    seconds = time.perf_counter() - start
    tok_dir = save_tokenizer(encoder, tokenizer_dir_for(onnx_path), text_len)
    dp = model.data_preprocessor
    post = dict(
        logits='(B, 1, S, S) at the letterboxed size: crop img_padding_size '
        '(right/bottom padding), resize bilinearly to the image, then '
        'sigmoid(logits) > threshold',
        threshold=float(model.decode_head.threshold),
        align_corners=bool(model.decode_head.align_corners))
    if wrapper.with_no_target:
        post['no_target_threshold'] = float(
            model.decode_head.no_target_head.threshold)
    meta = {
        'version': __version__,
        'config': config or '',
        'checkpoint': checkpoint or '',
        'model': type(model).__name__,
        'input_size': int(size),
        'text_len': text_len,
        'opset': int(opset),
        'preprocessing': dict(
            image='(B, 3, S, S) float32, RGB, raw 0-255, letterboxed: long '
            'side resized to S keeping the ratio, padded right/bottom; '
            'mean/std normalisation is inside the graph',
            channel_order='RGB', value_range=[0, 255],
            letterbox=box,
            mean=[float(v) for v in dp.mean.flatten()] if getattr(
                dp, 'mean', None) is not None else None,
            std=[float(v) for v in dp.std.flatten()] if getattr(
                dp, 'std', None) is not None else None,
            mean_std_channel_order='RGB' if wrapper.model_wants_rgb else
            'BGR',
            normalized_inside=wrapper.normalize),
        'postprocessing': post,
        'tokenizer': dict(dir=osp.basename(tok_dir),
                          encoder=type(encoder).__name__,
                          max_length=text_len,
                          inputs=['input_ids', 'attention_mask']),
        'outputs': dict(
            names=names,
            routers=[dict(name=name, experts=list(r.expert_names),
                          weights=f'{_safe_name(name)}_weights',
                          gates=f'{_safe_name(name)}_gates')
                     for name, r in wrapper.routers]),
        'config_text': _config_text(model),
    }
    proto = onnx.load(onnx_path)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key = f'sera_mm.{key}'
        entry.value = value if isinstance(value, str) else json.dumps(value)
    proto.producer_name = 'sera_mm'
    proto.producer_version = __version__
    onnx.checker.check_model(proto)
    onnx.save(proto, onnx_path)
    return ExportResult(onnx_path=onnx_path, tokenizer_dir=tok_dir,
                        metadata=meta, seconds=seconds,
                        input_names=[i.name for i in proto.graph.input],
                        output_names=names)


# ---------------------------------------------------------------- parity
@dataclass
class ParityReport:
    """Outcome of :func:`check_onnx_parity`.

    Attributes:
        ok: every check passed.
        max_abs_diff: largest |logit difference| over all inputs.
        min_iou: smallest mask IoU.
        rows: one dict per (image, expression).
        failures: what failed, in words.
    """
    ok: bool
    max_abs_diff: float
    min_iou: float
    rows: List[Dict[str, Any]]
    failures: List[str]
    atol: float = 1e-3
    iou_min: float = 0.99

    def lines(self) -> List[str]:
        """A printable table."""
        out = [f'{"image":>12} | {"expression":<34} | {"max|dlogit|":>11} '
               f'| {"mask IoU":>8} | {"fg":>6} | tokens | routing']
        for r in self.rows:
            out.append(
                f'{r["image"][-12:]:>12} | {r["text"][:34]:<34} | '
                f'{r["max_abs_diff"]:11.2e} | {r["iou"]:8.4f} | '
                f'{r["foreground"]:6.1%} | '
                f'{"same" if r["tokens_equal"] else "DIFF":>6} | '
                f'{r["routing_diff"]:.1e}')
        out.append(f'parity {"OK" if self.ok else "FAILED"}: max |dlogit| '
                   f'{self.max_abs_diff:.3e} (limit {self.atol:g}), min IoU '
                   f'{self.min_iou:.4f} (limit {self.iou_min:g})')
        out += [f'  - {f}' for f in self.failures]
        return out


def default_parity_inputs(size: int = 96) -> List[Tuple[str, np.ndarray]]:
    """A few deterministic test images (BGR): a synthetic scene, a
    landscape and a portrait crop of it, random noise."""
    from sera_mm.datasets.synthetic import sample_scene
    scene = sample_scene(np.random.default_rng(3), image_size=max(size, 64),
                         background='noise')
    rgb = scene.image
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    rng = np.random.default_rng(0)
    return [
        ('scene', bgr),
        ('landscape', np.ascontiguousarray(bgr[: bgr.shape[0] * 2 // 3])),
        ('portrait', np.ascontiguousarray(bgr[:, : bgr.shape[1] // 2])),
        ('noise', rng.integers(0, 256, (57, 83, 3), dtype=np.uint8)),
    ]


DEFAULT_PARITY_TEXTS = (
    'the red circle', 'the big blue square on the right',
    'a small yellow triangle left of the green star, partly hidden by the '
    'large purple ring near the top border of the picture')


def check_onnx_parity(model: nn.Module,
                      onnx_path: str,
                      images: Optional[Sequence[Tuple[str, Any]]] = None,
                      texts: Sequence[str] = DEFAULT_PARITY_TEXTS,
                      atol: float = 1e-3,
                      min_iou: float = 0.99,
                      threads: Optional[int] = 2) -> ParityReport:
    """Compare ONNX Runtime with PyTorch on ``images`` x ``texts``.

    PyTorch: :func:`sera_mm.apis.inference_model` (the pipeline's Letterbox
    at the export's size, the text encoder at its token length). ONNX:
    :class:`OnnxReferSegmenter` (numpy letterbox, saved tokenizer, ORT,
    numpy post-processing). Per (image, expression): the token ids, the max
    |logit difference| at the image's resolution, the IoU of the masks and
    the largest routing-weight difference. Also one batched call (2 images,
    1 expression) on the graph directly.

    Args:
        model: the PyTorch model the export came from.
        onnx_path: the exported file.
        images: ``(name, image)`` pairs (path, BGR array or PIL); default
            :func:`default_parity_inputs`.
        texts: expressions (the default includes one longer than the token
            length, i.e. truncated).
        atol: limit for the max |logit difference|.
        min_iou: limit for the mask IoU.
        threads: ONNX Runtime intra-op threads.

    Returns:
        :class:`ParityReport` (``ok`` False when a limit is broken).
    """
    seg = OnnxReferSegmenter(onnx_path, threads=threads)
    if images is None:
        images = default_parity_inputs()
    texts = list(texts)
    text_len = seg.tokenizer.max_length
    rows: List[Dict[str, Any]] = []
    failures: List[str] = []
    was_training = model.training
    warned = getattr(model.text_encoder, '_warned_truncation', None)
    model.eval()
    try:
        with text_length(model, text_len), warnings.catch_warnings():
            # the default expressions include a truncated one on purpose
            warnings.filterwarnings('ignore',
                                    message='.*longer than max_length')
            pipeline = build_inference_pipeline(model, seg.size)
            ref_tokens = model.text_encoder.tokenize(texts)
            ort_tokens = seg.tokenizer(texts)
            tokens_equal = [
                bool(np.array_equal(
                    ref_tokens['input_ids'][i].cpu().numpy(),
                    ort_tokens['input_ids'][i]) and np.array_equal(
                        ref_tokens['attention_mask'][i].cpu().numpy(),
                        ort_tokens['attention_mask'][i]))
                for i in range(len(texts))]
            boxed = []
            for name, image in images:
                img, _ = load_image(image)
                samples = inference_model(model, img, texts, pipeline=pipeline)
                preds = seg.predict(img, texts)
                boxed.append(seg.preprocess(img)[0])
                for k, (sample, pred) in enumerate(zip(samples, preds)):
                    ref_logits = sample.seg_logits.data[0].float().cpu(
                    ).numpy()
                    ref_mask = sample.pred_sem_seg.data[0].cpu().numpy() > 0
                    diff = float(np.abs(ref_logits - pred['logits']).max())
                    iou = mask_iou(ref_mask, pred['mask'])
                    routing_diff = 0.0
                    ref_routing = sample.metainfo.get('routing') or {}
                    for rname, entry in ref_routing.items():
                        got = (pred['routing'] or {}).get(rname)
                        if got is None:
                            routing_diff = float('inf')
                            continue
                        for key in ('weights', 'gates'):
                            routing_diff = max(routing_diff, float(np.abs(
                                np.asarray(entry[key]) -
                                np.asarray(got[key])).max()))
                    rows.append(dict(image=str(name), text=texts[k],
                                     max_abs_diff=diff, iou=iou,
                                     foreground=float(ref_mask.mean()),
                                     tokens_equal=tokens_equal[k],
                                     routing_diff=routing_diff))
            # the batch axis on the image side: 2 images, 1 expression
            if len(boxed) >= 2 and boxed[0].shape == boxed[1].shape:
                wrapper = SERAOnnxWrapper(model, seg.size).eval()
                batch = np.concatenate(boxed[:2])
                device = next(model.parameters()).device
                with torch.no_grad():
                    ref = wrapper(ref_tokens['input_ids'][:1],
                                  ref_tokens['attention_mask'][:1],
                                  torch.from_numpy(batch).to(device))[0]
                got = seg.run(ort_tokens['input_ids'][:1],
                              ort_tokens['attention_mask'][:1],
                              batch)['logits']
                batch_diff = float(np.abs(ref.cpu().numpy() - got).max())
                rows.append(dict(image='batch of 2', text=texts[0],
                                 max_abs_diff=batch_diff, iou=1.0,
                                 foreground=float('nan'),
                                 tokens_equal=tokens_equal[0],
                                 routing_diff=0.0))
    finally:
        model.train(was_training)
        if warned is not None:  # a later real truncation still warns once
            model.text_encoder._warned_truncation = warned
    max_diff = max(r['max_abs_diff'] for r in rows)
    worst_iou = min(r['iou'] for r in rows)
    if not max_diff < atol:
        failures.append(f'max |logit difference| {max_diff:.3e} >= {atol:g}')
    if not worst_iou > min_iou:
        failures.append(f'min mask IoU {worst_iou:.4f} <= {min_iou:g}')
    if not all(tokens_equal):
        bad = [t for t, ok in zip(texts, tokens_equal) if not ok]
        failures.append(f'token ids differ for {bad}')
    routing_worst = max(r['routing_diff'] for r in rows)
    if not routing_worst < atol:
        failures.append(f'routing weights differ by {routing_worst:.3e}')
    return ParityReport(ok=not failures, max_abs_diff=max_diff,
                        min_iou=worst_iou, rows=rows, failures=failures,
                        atol=atol, iou_min=min_iou)


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy of a model (e.g. to perturb it in a negative check),
    keeping ``cfg``."""
    other = copy.deepcopy(model)
    other.cfg = model.cfg
    return other


__all__ = ['SERAOnnxWrapper', 'check_exportable', 'export_mode',
           'text_length',
           'save_tokenizer', 'tokenizer_dir_for', 'ExportResult',
           'export_onnx', 'ParityReport', 'default_parity_inputs',
           'DEFAULT_PARITY_TEXTS', 'check_onnx_parity', 'clone_model',
           'DEFAULT_OPSET']
