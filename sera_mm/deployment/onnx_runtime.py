"""Run an exported SERA model with ONNX Runtime, without PyTorch.

The pieces of :func:`sera_mm.apis.inference_model` an ONNX model needs
around it, in numpy / OpenCV: the letterbox of the data pipeline
(:mod:`sera_mm.datasets.transforms.letterbox_geometry`), the tokenizer
(the ``tokenizers`` library on the files saved beside the model), and the
post-processing of ``SERASegmentor.postprocess_result`` (crop the padding,
bilinear resize to the image, ``sigmoid > threshold``, the no-target rule).

The exported graph (see :mod:`sera_mm.deployment.export`) takes

* ``input_ids`` (B or 1, L) int64 and ``attention_mask`` (B or 1, L) int64,
* ``image`` (B or 1, 3, S, S) float32: the letterboxed image in **RGB, raw
  0-255** (padding right/bottom with the pipeline's pad value); the mean/std
  normalisation of the data preprocessor is inside the graph,

and gives ``logits`` (B, 1, S, S) at the letterboxed size (what the head's
``predict_by_feat`` gives before the padding is cropped), then per router
``<name>_weights`` / ``<name>_gates`` (B, E) and, with a no-target head,
``no_target_score`` (B,). A batch of 1 on either side is broadcast to the
other (one image, several expressions). The model's ``metadata_props``
(:data:`METADATA_KEYS`, JSON values) say how to prepare the inputs.

Only numpy, OpenCV, onnxruntime and tokenizers are imported.
"""
import json
import os
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from sera_mm.datasets.transforms.letterbox_geometry import letterbox_image
from sera_mm.utils.text_input import check_expressions

#: metadata_props written by the export (values are JSON).
METADATA_KEYS = ('sera_mm.version', 'sera_mm.config', 'sera_mm.checkpoint',
                 'sera_mm.model', 'sera_mm.input_size', 'sera_mm.text_len',
                 'sera_mm.opset', 'sera_mm.preprocessing',
                 'sera_mm.postprocessing', 'sera_mm.tokenizer',
                 'sera_mm.outputs', 'sera_mm.config_text')
#: Inside the tokenizer folder: the settings :class:`RuntimeTokenizer`
#: applies on top of ``tokenizer.json``.
TOKENIZER_SETTINGS = 'sera_tokenizer.json'
INPUT_NAMES = ('input_ids', 'attention_mask', 'image')


def read_metadata(model_path: str) -> Dict[str, Any]:
    """The export's metadata of an ONNX file, JSON-decoded, keys without the
    ``sera_mm.`` prefix (needs only onnxruntime).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the model has no SERA-MM metadata.
    """
    import onnxruntime as ort
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'ONNX model not found: {model_path}')
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options,
                                   providers=['CPUExecutionProvider'])
    return _decode_metadata(session.get_modelmeta().custom_metadata_map,
                            model_path)


def _decode_metadata(props: Mapping[str, str], source: str) -> Dict[str, Any]:
    meta = {}
    for key, value in props.items():
        if not key.startswith('sera_mm.'):
            continue
        try:
            meta[key[len('sera_mm.'):]] = json.loads(value)
        except ValueError:
            meta[key[len('sera_mm.'):]] = value
    missing = [k for k in ('input_size', 'text_len', 'preprocessing',
                           'postprocessing', 'tokenizer', 'outputs')
               if k not in meta]
    if missing:
        raise ValueError(f'{source}: not a SERA-MM export (metadata_props '
                         f'lack {["sera_mm." + k for k in missing]}); export '
                         'it with tools/deployment/pytorch2onnx.py')
    return meta


class RuntimeTokenizer:
    """The text encoder's tokenizer from the files saved with the model:
    ``tokenizer.json`` (read by the ``tokenizers`` library, which the
    transformers tokenizers of both encoders are built on) and
    :data:`TOKENIZER_SETTINGS` (length, padding token), padding and
    truncating to ``max_length`` as ``BaseTextEncoder.tokenize`` does.

    Args:
        folder: the tokenizer folder written by the export.
    """

    def __init__(self, folder: str) -> None:
        from tokenizers import Tokenizer
        settings_path = osp.join(folder, TOKENIZER_SETTINGS)
        tok_path = osp.join(folder, 'tokenizer.json')
        for path in (settings_path, tok_path):
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'tokenizer file not found: {path} (it is written next '
                    'to the .onnx file by the export)')
        with open(settings_path, encoding='utf-8') as f:
            self.settings = json.load(f)
        self.max_length = int(self.settings['max_length'])
        self.tokenizer = Tokenizer.from_file(tok_path)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self._padded = Tokenizer.from_file(tok_path)
        self._padded.enable_truncation(
            max_length=self.max_length,
            direction=self.settings.get('truncation_side', 'right'))
        self._padded.enable_padding(
            length=self.max_length,
            direction=self.settings.get('padding_side', 'right'),
            pad_id=int(self.settings['pad_token_id']),
            pad_type_id=int(self.settings.get('pad_token_type_id', 0)),
            pad_token=str(self.settings['pad_token']))

    def lengths(self, texts: Sequence[str]) -> List[int]:
        """Untruncated token counts (special tokens included)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]

    def __call__(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask``, (B, max_length) int64."""
        texts = check_expressions(texts)
        encs = self._padded.encode_batch(texts)
        return dict(
            input_ids=np.asarray([e.ids for e in encs], dtype=np.int64),
            attention_mask=np.asarray([e.attention_mask for e in encs],
                                      dtype=np.int64))


def _axis_weights(n_in: int, n_out: int, align_corners: bool):
    """Source indices and weights of a linear resize along one axis, as
    ``torch.nn.functional.interpolate(mode='bilinear', size=...)``."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = dst * scale
    else:
        scale = n_in / n_out
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    return i0, i1, lam


def resize_bilinear(x: np.ndarray, size: Sequence[int],
                    align_corners: bool = False) -> np.ndarray:
    """Resize (..., H, W) float maps to ``size`` = (h, w) like torch's
    bilinear ``interpolate`` (no antialiasing)."""
    h, w = int(size[0]), int(size[1])
    x = np.asarray(x, dtype=np.float32)
    r0, r1, rl = _axis_weights(x.shape[-2], h, align_corners)
    c0, c1, cl = _axis_weights(x.shape[-1], w, align_corners)
    rows = (x[..., r0, :] * (1 - rl)[:, None] + x[..., r1, :] * rl[:, None])
    return rows[..., c0] * (1 - cl) + rows[..., c1] * cl


def undo_letterbox_logits(logits: np.ndarray,
                          img_padding_size: Sequence[int],
                          ori_shape: Sequence[int],
                          align_corners: bool = False) -> np.ndarray:
    """(S, S) letterboxed logits -> (H, W) at the original image: crop
    ``img_padding_size`` = [left, right, top, bottom], resize bilinearly
    (``SERASegmentor.postprocess_result``)."""
    left, right, top, bottom = (int(v) for v in img_padding_size)
    s_h, s_w = logits.shape[-2:]
    if left + right >= s_w or top + bottom >= s_h:
        raise ValueError(f'img_padding_size {list(img_padding_size)} leaves '
                         f'no pixel of a {s_h}x{s_w} map')
    crop = logits[..., top:s_h - bottom, left:s_w - right]
    return resize_bilinear(crop, ori_shape[:2], align_corners)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float32)."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class OnnxReferSegmenter:
    """An exported SERA model in ONNX Runtime, with its pre- and
    post-processing.

    Args:
        model_path: the ``.onnx`` file (its tokenizer folder beside it).
        threads: intra-op threads (None: ONNX Runtime's default).
        providers: execution providers (default CPU).
        spinning: let idle intra-op threads spin-wait (ONNX Runtime's
            default; faster back-to-back runs, but they keep cores busy).

    Attributes:
        meta: the decoded metadata (:func:`read_metadata`).
        tokenizer: :class:`RuntimeTokenizer`.
        size: letterbox side S.
    """

    def __init__(self, model_path: str, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None,
                 spinning: bool = True) -> None:
        import onnxruntime as ort
        if not osp.isfile(model_path):
            raise FileNotFoundError(f'ONNX model not found: {model_path}')
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if not spinning:
            # idle pool threads sleep instead of spinning after a run (what
            # a fair comparison with another runtime in the same process
            # needs)
            options.add_session_config_entry(
                'session.intra_op.allow_spinning', '0')
        self.model_path = model_path
        self.session = ort.InferenceSession(
            model_path, options,
            providers=list(providers or ['CPUExecutionProvider']))
        self.meta = _decode_metadata(
            self.session.get_modelmeta().custom_metadata_map, model_path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        folder = self.meta['tokenizer']['dir']
        if not osp.isabs(folder):
            folder = osp.join(osp.dirname(osp.abspath(model_path)), folder)
        self.tokenizer = RuntimeTokenizer(folder)
        self.size = int(self.meta['input_size'])
        pre = self.meta['preprocessing']
        self.letterbox = dict(pre['letterbox'])
        self.channel_order = pre.get('channel_order', 'RGB')
        post = self.meta['postprocessing']
        self.threshold = float(post['threshold'])
        self.align_corners = bool(post.get('align_corners', False))
        self.no_target_threshold = post.get('no_target_threshold')

    # ------------------------------------------------------------ steps
    def preprocess(self, image: np.ndarray):
        """(H, W, 3) uint8 BGR -> ((1, 3, S, S) float32 input, letterbox
        metainfo)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError('image must be an (H, W, 3) uint8 BGR array, '
                             f'got shape {image.shape} dtype {image.dtype}')
        boxed, info = letterbox_image(
            image, self.size, pad_val=self.letterbox.get('pad_val', 0),
            interpolation=self.letterbox.get('interpolation', 'bilinear'))
        if self.channel_order.upper() == 'RGB':
            boxed = boxed[..., ::-1]
        tensor = np.ascontiguousarray(
            boxed.transpose(2, 0, 1)[None].astype(np.float32))
        return tensor, info

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            image: np.ndarray) -> Dict[str, np.ndarray]:
        """One ONNX Runtime call on prepared inputs; outputs by name.
        Inputs the graph does not use (e.g. CLIP's attention mask) are not
        fed."""
        feeds = dict(input_ids=np.asarray(input_ids, np.int64),
                     attention_mask=np.asarray(attention_mask, np.int64),
                     image=np.asarray(image, np.float32))
        outs = self.session.run(None, {k: v for k, v in feeds.items()
                                       if k in self.input_names})
        return dict(zip(self.output_names, outs))

    def routing(self, outputs: Mapping[str, np.ndarray],
                i: int) -> Optional[Dict[str, Dict[str, list]]]:
        """The routing metainfo of sample ``i`` (as ``SERASegmentor.
        predict`` gives it), None for a model without routers."""
        routers = self.meta['outputs'].get('routers') or []
        if not routers:
            return None
        out = {}
        for entry in routers:
            out[entry['name']] = {
                'experts': list(entry['experts']),
                'weights': [float(w) for w in outputs[entry['weights']][i]],
                'gates': [float(g) for g in outputs[entry['gates']][i]],
            }
        return out

    def predict(self, image: np.ndarray,
                texts: Sequence[str]) -> List[Dict[str, Any]]:
        """Segment each expression in one image.

        Args:
            image: (H, W, 3) uint8 BGR.
            texts: expressions.

        Returns:
            Per expression ``dict(text, logits (H, W) float32, mask (H, W)
            bool, routing, no_target_score)``.
        """
        texts = check_expressions(texts)
        tensor, info = self.preprocess(image)
        enc = self.tokenizer(texts)
        outputs = self.run(enc['input_ids'], enc['attention_mask'], tensor)
        logits = outputs['logits']
        results = []
        for i, text in enumerate(texts):
            full = undo_letterbox_logits(logits[i, 0],
                                         info['img_padding_size'],
                                         info['ori_shape'],
                                         self.align_corners)
            mask = sigmoid(full) > self.threshold
            score = None
            if 'no_target_score' in outputs:
                score = float(outputs['no_target_score'][i])
                if score > float(self.no_target_threshold):
                    mask = np.zeros_like(mask)
            results.append(dict(text=text, logits=full, mask=mask,
                                routing=self.routing(outputs, i),
                                no_target_score=score))
        return results


def default_threads() -> int:
    """``OMP_NUM_THREADS`` if set, else the CPU count."""
    value = os.environ.get('OMP_NUM_THREADS', '')
    return int(value) if value.isdigit() and int(value) > 0 else (
        os.cpu_count() or 1)


__all__ = ['METADATA_KEYS', 'TOKENIZER_SETTINGS', 'INPUT_NAMES',
           'read_metadata', 'check_expressions', 'RuntimeTokenizer',
           'resize_bilinear', 'undo_letterbox_logits', 'sigmoid',
           'OnnxReferSegmenter', 'default_threads']
