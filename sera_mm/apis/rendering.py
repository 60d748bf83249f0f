"""Pictures of predictions for interactive front ends (the web demo): per
expression the mask, the mask overlaid on the image and the router's expert
weights as a bar chart, all drawn with
:mod:`sera_mm.visualization.refer_visualizer`; optionally the same files as
``tools/infer.py`` (masks, overlays, ``predictions.json``) and a zip of
them.

:func:`render_predictions` is torch-free (numpy masks in);
:func:`segment_and_render` runs :func:`~sera_mm.apis.inference_model` first.
"""
import os
import os.path as osp
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from sera_mm.visualization.refer_visualizer import (draw_overlay,
                                                    draw_routing_chart)
from sera_mm.utils.image_io import ImageInput, load_image
from .prediction_io import (prediction_mask, save_predictions,
                            write_predictions_json)

__all__ = ['PredictionView', 'render_predictions', 'segment_and_render',
           'zip_files']


@dataclass
class PredictionView:
    """What a front end shows for one expression (BGR uint8 pictures).

    Attributes:
        text: the expression.
        mask: (H, W) bool at the image's resolution.
        overlay: (H, W, 3) the mask blended onto the image (no caption,
            same size as the image).
        mask_image: (H, W, 3) the mask in white on black.
        chart: the router bar chart, or None when the model reports no
            routing.
        foreground: share of mask pixels.
        routing: the routing metainfo (None without routers).
        no_target_score: a no-target head's probability, or None.
    """
    text: str
    mask: np.ndarray
    overlay: np.ndarray
    mask_image: np.ndarray
    chart: Optional[np.ndarray] = None
    foreground: float = 0.0
    routing: Optional[Mapping[str, Any]] = None
    no_target_score: Optional[float] = None
    files: Dict[str, str] = field(default_factory=dict)

    def caption(self) -> str:
        """``"<text>" (foreground 12.3%)`` (and the no-target score)."""
        extra = ('' if self.no_target_score is None else
                 f', no-target {self.no_target_score:.2f}')
        return f'"{self.text}" (foreground {self.foreground:.1%}{extra})'


def render_predictions(image: np.ndarray,
                       texts: Sequence[str],
                       masks: Sequence[np.ndarray],
                       routings: Optional[Sequence[Optional[Mapping]]] = None,
                       no_target_scores: Optional[Sequence[Optional[float]]]
                       = None,
                       chart_size: Tuple[int, int] = (240, 360),
                       router_mode: str = 'average') -> List[PredictionView]:
    """Draw one :class:`PredictionView` per expression.

    Args:
        image: (H, W, 3) uint8 BGR.
        texts: the expressions.
        masks: (H, W) masks (``> 0`` is foreground), one per expression.
        routings: routing metainfo per expression (or None).
        no_target_scores: per expression, or None.
        chart_size: (height, width) of the bar charts.
        router_mode: see
            :func:`~sera_mm.visualization.refer_visualizer.routing_bar_data`.

    Raises:
        ValueError: lengths differ or a mask does not match the image.
    """
    n = len(texts)
    if len(masks) != n:
        raise ValueError(f'{n} texts but {len(masks)} masks')
    routings = list(routings) if routings is not None else [None] * n
    scores = (list(no_target_scores) if no_target_scores is not None else
              [None] * n)
    if len(routings) != n or len(scores) != n:
        raise ValueError(f'{n} texts but {len(routings)} routings and '
                         f'{len(scores)} no-target scores')
    views = []
    for text, mask, routing, score in zip(texts, masks, routings, scores):
        mask = np.asarray(mask) > 0
        mask_u8 = mask.astype(np.uint8) * 255
        views.append(PredictionView(
            text=str(text), mask=mask,
            overlay=draw_overlay(image, mask, ''),
            mask_image=np.repeat(mask_u8[..., None], 3, axis=2),
            chart=draw_routing_chart(routing, *chart_size, mode=router_mode,
                                     title=f'experts ({router_mode})'),
            foreground=float(mask.mean()), routing=routing,
            no_target_score=None if score is None else float(score)))
    return views


def zip_files(paths: Sequence[str], zip_path: str) -> str:
    """Store ``paths`` (flat, by base name) in a new zip file."""
    os.makedirs(osp.dirname(osp.abspath(zip_path)), exist_ok=True)
    with zipfile.ZipFile(zip_path, 'w', zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, arcname=osp.basename(path))
    return zip_path


def segment_and_render(model,
                       image: ImageInput,
                       texts: Sequence[str],
                       out_dir: Optional[str] = None,
                       stem: str = 'image',
                       image_name: Optional[str] = None,
                       **render_kwargs) -> Tuple[List[PredictionView],
                                                 List[Dict[str, Any]]]:
    """Segment ``texts`` in ``image`` with
    :func:`~sera_mm.apis.inference_model` and draw the results.

    Args:
        model: a model from :func:`~sera_mm.apis.init_model`.
        image: path, BGR array or PIL image.
        texts: the expressions.
        out_dir: if given, the files of ``tools/infer.py`` are written
            there too (``<stem>_<k>_mask.png``, ``<stem>_<k>_overlay.png``,
            ``predictions.json``; each view's ``files`` names them).
        stem: file stem of the image.
        image_name: the ``image`` entry of the records.
        **render_kwargs: passed to :func:`render_predictions`.

    Returns:
        (views, records); records is empty without ``out_dir``.

    Raises:
        ValueError: an empty expression or an unusable image (from
            :func:`~sera_mm.apis.inference_model`).
    """
    from .inference import inference_model
    img, path = load_image(image)
    samples = inference_model(model, img, list(texts))
    views = render_predictions(
        img, [str(s.metainfo.get('text', t)) for s, t in zip(samples, texts)],
        [prediction_mask(s) for s in samples],
        [s.metainfo.get('routing') for s in samples],
        [s.metainfo.get('no_target_score') for s in samples],
        **render_kwargs)
    records: List[Dict[str, Any]] = []
    if out_dir is not None:
        records = save_predictions(img, samples, out_dir, stem,
                                   image_name=image_name or path or stem)
        json_path = write_predictions_json(records, out_dir)
        for view, record in zip(views, records):
            view.files = dict(mask=record['mask'], overlay=record['overlay'],
                              predictions=json_path)
    return views, records
