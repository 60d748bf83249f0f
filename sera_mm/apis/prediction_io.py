"""Read inference jobs and write predictions: a binary mask PNG and an
overlay picture per expression, plus ``predictions.json``.

``tools/infer.py`` (PyTorch), ``tools/deployment/onnx_infer.py`` (ONNX
Runtime) and the web demo write through these functions, so the three give
the same files. The module imports no torch (``SegDataSample`` is only
read through its attributes): the ONNX tool uses it without PyTorch.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import (TYPE_CHECKING, Any, Dict, List, Mapping, Optional,
                    Sequence)

import numpy as np

from sera_mm.utils.file_io import atomic_write_image, atomic_write_json
from sera_mm.visualization.refer_visualizer import PRED_COLOR, draw_overlay
from sera_mm.utils.image_io import ImageInput, load_image

if TYPE_CHECKING:  # pragma: no cover
    from mmseg.structures import SegDataSample

#: BGR colour of the predicted region in overlays.
MASK_COLOR = PRED_COLOR
#: Image files a folder given to ``--image`` is searched for.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')
#: Name of the listing written beside the masks.
PREDICTIONS_JSON = 'predictions.json'

__all__ = [
    'MASK_COLOR', 'IMAGE_EXTENSIONS', 'PREDICTIONS_JSON', 'draw_overlay',
    'prediction_mask', 'save_prediction', 'save_predictions',
    'write_mask_and_overlay', 'write_predictions', 'prediction_record',
    'write_predictions_json', 'format_record', 'collect_jobs',
    'unique_stems', 'add_job_arguments', 'check_job_arguments'
]


def prediction_mask(sample: 'SegDataSample') -> np.ndarray:
    """The predicted mask of a sample as an (H, W) bool array.

    Raises:
        KeyError: the sample has no ``pred_sem_seg``.
    """
    if 'pred_sem_seg' not in sample:
        raise KeyError('sample has no "pred_sem_seg"; keys: '
                       f'{sorted(sample.keys())}')
    data = sample.pred_sem_seg.data
    if data.dim() == 3:
        data = data[0]
    return data.detach().cpu().numpy() > 0


def _check_stem(stem: str) -> None:
    if not stem or osp.basename(stem) != stem:
        raise ValueError(f'stem must be a plain file name, got {stem!r}')


def write_mask_and_overlay(image: np.ndarray, mask: np.ndarray, text: str,
                           out_dir: str, stem: str) -> Dict[str, str]:
    """Write ``<out_dir>/<stem>_mask.png`` (0/255) and
    ``<out_dir>/<stem>_overlay.png`` (image + coloured mask + expression,
    :func:`~sera_mm.visualization.refer_visualizer.draw_overlay`), each
    atomically (temporary file + rename).

    Args:
        image: (H, W, 3) uint8 BGR.
        mask: (H, W) bool (``> 0`` is foreground).
        text: the expression written on the overlay.
        out_dir: output folder (created).
        stem: file name stem.

    Returns:
        ``dict(mask=path, overlay=path)``.

    Raises:
        ValueError: empty ``stem`` or a mask of another size than the image.
    """
    _check_stem(stem)
    mask = np.asarray(mask) > 0
    if mask.shape != image.shape[:2]:
        raise ValueError(f'prediction of shape {mask.shape} does not match '
                         f'the image of shape {image.shape[:2]}')
    os.makedirs(out_dir, exist_ok=True)
    paths = dict(mask=osp.join(out_dir, f'{stem}_mask.png'),
                 overlay=osp.join(out_dir, f'{stem}_overlay.png'))
    atomic_write_image(paths['mask'], mask.astype(np.uint8) * 255)
    atomic_write_image(paths['overlay'], draw_overlay(image, mask, text))
    return paths


def save_prediction(image: ImageInput, sample: 'SegDataSample',
                    out_dir: str, stem: str) -> Dict[str, str]:
    """Write ``<out_dir>/<stem>_mask.png`` (0/255) and
    ``<out_dir>/<stem>_overlay.png`` (image + coloured mask + expression),
    each atomically (temporary file + rename).

    Args:
        image: the image the prediction was made on: the decoded (H, W, 3)
            BGR array given to ``inference_model`` is reused as is (a path
            or PIL image is decoded by
            :func:`~sera_mm.utils.image_io.load_image`, the same path).
        sample: a prediction from
            :func:`~sera_mm.apis.inference_model` (``pred_sem_seg`` at the
            image's resolution, ``text`` in its metainfo).
        out_dir: output folder (created).
        stem: file name stem.

    Returns:
        ``dict(mask=path, overlay=path)``.

    Raises:
        ValueError: empty ``stem`` or a mask of another size than the image.
    """
    _check_stem(stem)
    img, _ = load_image(image)
    return write_mask_and_overlay(img, prediction_mask(sample),
                                  str(sample.metainfo.get('text', '')),
                                  out_dir, stem)


def prediction_record(image: str, text: str, mask: np.ndarray,
                      paths: Mapping[str, str],
                      routing: Optional[Mapping] = None,
                      **extra: Any) -> Dict[str, Any]:
    """One entry of ``predictions.json``: ``image``, ``text``,
    ``foreground`` (share of mask pixels), ``boxes`` (the tight box of the
    mask, ``[x1, y1, x2, y2]`` in pixel edges: the foreground spans columns
    x1 .. x2 - 1 and rows y1 .. y2 - 1; None (JSON null) for an empty
    mask), the written file paths, then ``routing`` (when given) and any
    ``extra`` keys."""
    # imported here, not at the top: this module itself imports no torch
    from sera_mm.evaluation.boxes import mask_to_box
    record: Dict[str, Any] = dict(image=image, text=text,
                                  foreground=float(np.mean(
                                      np.asarray(mask) > 0)),
                                  boxes=mask_to_box(np.asarray(mask) > 0),
                                  **paths)
    if routing is not None:
        record['routing'] = routing
    record.update(extra)
    return record


def write_predictions(image: np.ndarray, image_name: str,
                      texts: Sequence[str], masks: Sequence[np.ndarray],
                      out_dir: str, stem: str,
                      routings: Optional[Sequence[Optional[Mapping]]] = None,
                      extras: Optional[Sequence[Mapping]] = None
                      ) -> List[Dict[str, Any]]:
    """Write the mask and overlay of each expression of one image as
    ``<stem>_<k>_mask.png`` / ``<stem>_<k>_overlay.png`` (``k`` numbers the
    expressions) and return their :func:`prediction_record` entries.

    Args:
        image: (H, W, 3) uint8 BGR.
        image_name: what the records give as ``image`` (usually its path).
        texts: the expressions.
        masks: one (H, W) mask per expression.
        out_dir: output folder.
        stem: file stem of the image.
        routings: per expression, the routing metainfo or None.
        extras: per expression, more record keys.

    Raises:
        ValueError: the numbers of texts, masks, routings differ.
    """
    n = len(texts)
    for name, seq in (('masks', masks), ('routings', routings),
                      ('extras', extras)):
        if seq is not None and len(seq) != n:
            raise ValueError(f'{n} texts but {len(seq)} {name}')
    records = []
    for k, (text, mask) in enumerate(zip(texts, masks)):
        paths = write_mask_and_overlay(image, mask, text, out_dir,
                                       f'{stem}_{k}')
        records.append(prediction_record(
            image_name, text, mask, paths,
            routings[k] if routings is not None else None,
            **(dict(extras[k]) if extras is not None else {})))
    return records


def save_predictions(image: ImageInput, samples: Sequence['SegDataSample'],
                     out_dir: str, stem: str,
                     image_name: Optional[str] = None
                     ) -> List[Dict[str, Any]]:
    """:func:`write_predictions` for the samples
    :func:`~sera_mm.apis.inference_model` returned for one image (the
    expressions and routing are read from their metainfo)."""
    img, path = load_image(image)
    texts = [str(s.metainfo.get('text', '')) for s in samples]
    routings = [s.metainfo.get('routing') for s in samples]
    extras = [{'no_target_score': float(s.metainfo['no_target_score'])}
              if 'no_target_score' in s.metainfo else {} for s in samples]
    return write_predictions(
        img, image_name if image_name is not None else (path or stem),
        texts, [prediction_mask(s) for s in samples], out_dir, stem,
        routings, extras)


def write_predictions_json(records: Sequence[Mapping], out_dir: str) -> str:
    """Write ``<out_dir>/predictions.json`` (atomically); returns its path."""
    path = osp.join(out_dir, PREDICTIONS_JSON)
    atomic_write_json(list(records), path, indent=1, default=str)
    return path


def format_record(record: Mapping) -> str:
    """The line the tools print per prediction."""
    return (f'{record["image"]} | "{record["text"]}" | foreground '
            f'{record["foreground"]:.1%} | {record["mask"]}')


def add_job_arguments(parser) -> None:
    """Declare ``--image``, ``--text``, ``--pairs`` and ``--out-dir``: the
    inference jobs of ``tools/infer.py`` and ``onnx_infer.py``
    (:func:`collect_jobs` reads them; :func:`check_job_arguments` checks
    them after parsing)."""
    parser.add_argument('--image', help='an image file or a folder of images')
    parser.add_argument('--text', nargs='+', default=[],
                        help='expression(s), applied to every --image')
    parser.add_argument('--pairs', help='JSON list of {"image", "text"}')
    parser.add_argument('--out-dir', default='infer_out',
                        help='output folder')


def check_job_arguments(parser, args) -> None:
    """``parser.error`` unless the parsed job arguments name some work:
    ``--image`` with ``--text``, or ``--pairs``."""
    if args.pairs is None and args.image is None:
        parser.error('give --image with --text, or --pairs')
    if args.image is not None and not args.text:
        parser.error('--image needs at least one --text')
    if args.text and args.image is None:
        parser.error('--text needs --image')


def collect_jobs(image: Optional[str] = None,
                 texts: Sequence[str] = (),
                 pairs: Optional[str] = None) -> 'OrderedDict[str, List[str]]':
    """Map each image path to its expressions, in input order.

    Args:
        image: an image file or a folder of images (each gets ``texts``).
        texts: the expressions for ``image``.
        pairs: a JSON list of ``{"image", "text"}`` (relative image paths
            are read relative to the JSON file).

    Raises:
        FileNotFoundError: a missing image, pairs file or listed image.
        ValueError: a malformed pairs file or a folder without images.
    """
    jobs: 'OrderedDict[str, List[str]]' = OrderedDict()
    if image is not None:
        if osp.isdir(image):
            images = sorted(
                osp.join(image, f) for f in os.listdir(image)
                if f.lower().endswith(IMAGE_EXTENSIONS))
            if not images:
                raise ValueError(f'no images ({IMAGE_EXTENSIONS}) in folder '
                                 f'{image}')
        elif osp.isfile(image):
            images = [image]
        else:
            raise FileNotFoundError(f'image file not found: {image}')
        for path in images:
            jobs.setdefault(path, []).extend(texts)
    if pairs is not None:
        if not osp.isfile(pairs):
            raise FileNotFoundError(f'pairs file not found: {pairs}')
        try:
            with open(pairs, encoding='utf-8') as f:
                items = json.load(f)
        except UnicodeDecodeError as e:
            raise ValueError(f'pairs file {pairs}: not UTF-8 text ({e.reason} '
                             f'at byte {e.start}); expected a UTF-8 JSON '
                             'list of {"image", "text"}') from None
        except json.JSONDecodeError as e:
            raise ValueError(f'pairs file {pairs}: not valid JSON ({e.msg}, '
                             f'line {e.lineno} column {e.colno}); expected a '
                             'JSON list of {"image", "text"}') from None
        if not isinstance(items, list):
            raise ValueError(f'{pairs}: expected a JSON list of '
                             f'{{"image", "text"}}, got '
                             f'{type(items).__name__}')
        root = osp.dirname(osp.abspath(pairs))
        for i, pair in enumerate(items):
            if not (isinstance(pair, dict) and 'image' in pair
                    and 'text' in pair):
                raise ValueError(f'{pairs}[{i}]: expected an object '
                                 f'with "image" and "text", got {pair!r}')
            path = pair['image']
            if not osp.isabs(path):
                path = osp.join(root, path)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'image file not found: {path} ({pairs}[{i}])')
            jobs.setdefault(path, []).append(pair['text'])
    return jobs


def unique_stems(images: Sequence[str]) -> Dict[str, str]:
    """Unique file stems for the images (suffix added on clashes)."""
    stems: Dict[str, str] = {}
    used: Dict[str, int] = {}
    for image in images:
        stem = osp.splitext(osp.basename(image))[0]
        count = used.get(stem, 0)
        used[stem] = count + 1
        stems[image] = stem if count == 0 else f'{stem}-{count}'
    return stems
