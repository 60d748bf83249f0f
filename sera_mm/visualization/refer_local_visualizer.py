"""``ReferLocalVisualizer``: MMSegmentation's local visualizer for referring
segmentation.

``add_datasample`` follows :class:`mmseg.visualization.SegLocalVisualizer`
(RGB image in; shown, written to ``out_file`` or handed to the vis backends
at ``step``), but draws SERA-MM's picture of one expression instead of a
class palette: ``[image + expression | ground truth overlay | prediction
overlay (IoU) | router expert weights]``
(:func:`~sera_mm.visualization.refer_visualizer.compose_refer_panel`, the
drawer the inference pictures share). :class:`ReferVisualizationHook` draws
through it.
"""
from typing import Any, Dict, Optional

import numpy as np
from mmengine.dist import master_only
from mmseg.visualization import SegLocalVisualizer

from sera_mm.registry import VISUALIZERS
from sera_mm.utils.file_io import atomic_write_image
from .refer_visualizer import compose_refer_panel, mask_iou

__all__ = ['ReferLocalVisualizer', 'sample_meta', 'sample_mask']


def sample_meta(sample: Any) -> Dict[str, Any]:
    """The metainfo of a ``SegDataSample`` (or the keys of a dict)."""
    if hasattr(sample, 'metainfo'):
        return dict(sample.metainfo)
    return dict(sample) if isinstance(sample, dict) else {}


def sample_mask(sample: Any, field: str) -> Optional[np.ndarray]:
    """``sample.<field>.data`` as an (H, W) numpy array, or None (a
    ``SegDataSample`` or a dict of ``{field: {'data': ...}}``)."""
    if sample is None:
        return None
    if isinstance(sample, dict):
        value = sample.get(field)
        data = value.get('data') if isinstance(value, dict) else None
    else:
        value = getattr(sample, field, None) if field in sample else None
        data = getattr(value, 'data', None)
    if data is None:
        return None
    if hasattr(data, 'detach'):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    return data[0] if data.ndim == 3 else data


@VISUALIZERS.register_module()
class ReferLocalVisualizer(SegLocalVisualizer):
    """Local visualizer of referring predictions.

    Args:
        name: instance name (mmengine visualizers are named singletons).
        image: initial image (RGB), as for ``SegLocalVisualizer``.
        vis_backends: backend configs (``LocalVisBackend``,
            ``TensorboardVisBackend``, ...).
        save_dir: folder of the backends.
        panel_height: height of every panel in pixels.
        router_mode: ``'average'``, ``'group'`` or ``'router'`` (see
            :func:`~sera_mm.visualization.routing_bar_data`).
        draw_router: draw the router panel when the sample has ``routing``.
        alpha: kept as ``SegLocalVisualizer.alpha``; the referring
            pictures overlay the masks at the fixed opacity of
            :func:`~sera_mm.visualization.compose_refer_panel`.
        **kwargs: passed to ``SegLocalVisualizer`` (``classes``,
            ``palette``, ``dataset_name`` are accepted and unused).

    Raises:
        ValueError: a ``panel_height`` below 16 or an unknown
            ``router_mode``.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 image: Optional[np.ndarray] = None,
                 vis_backends: Optional[list] = None,
                 save_dir: Optional[str] = None,
                 panel_height: int = 256,
                 router_mode: str = 'average',
                 draw_router: bool = True,
                 alpha: float = 0.5,
                 **kwargs) -> None:
        if router_mode not in ('average', 'group', 'router'):
            raise ValueError("router_mode must be 'average', 'group' or "
                             f"'router', got {router_mode!r}")
        if int(panel_height) < 16:
            raise ValueError(f'panel_height must be >= 16, got {panel_height}')
        super().__init__(name=name, image=image, vis_backends=vis_backends,
                         save_dir=save_dir, alpha=alpha, **kwargs)
        self.panel_height = int(panel_height)
        self.router_mode = router_mode
        self.draw_router = bool(draw_router)

    def draw_refer_sample(self, image_bgr: np.ndarray,
                          data_sample: Any = None,
                          draw_gt: bool = True,
                          draw_pred: bool = True) -> np.ndarray:
        """The picture of one expression as a BGR array.

        Args:
            image_bgr: (H, W, 3) uint8 BGR at the sample's original size.
            data_sample: a ``SegDataSample`` (or dict) with ``text``,
                ``routing``, ``no_target``, ``no_target_score`` in its
                metainfo and ``gt_sem_seg`` / ``pred_sem_seg``; all
                optional.
            draw_gt: draw the ground-truth panel when there is one.
            draw_pred: draw the prediction panel when there is one.

        Returns:
            (panel_height + title, W_total, 3) uint8 BGR.
        """
        meta = sample_meta(data_sample)
        gt = sample_mask(data_sample, 'gt_sem_seg') if draw_gt else None
        pred = sample_mask(data_sample, 'pred_sem_seg') if draw_pred else None
        iou = None
        if gt is not None and pred is not None and gt.shape == pred.shape:
            iou = mask_iou(pred, gt)
        routing = meta.get('routing') if self.draw_router else None
        return compose_refer_panel(
            image_bgr, text=str(meta.get('text') or ''), gt_mask=gt,
            pred_mask=pred, routing=routing or None,
            panel_height=self.panel_height, router_mode=self.router_mode,
            iou=iou, no_target=meta.get('no_target'),
            no_target_score=meta.get('no_target_score'))

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Any = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       with_labels: Optional[bool] = True,
                       backends: Optional[bool] = None) -> np.ndarray:
        """Draw one sample; show it, write it to ``out_file`` (atomically,
        as PNG/JPEG by extension) or hand it to the vis backends at
        ``step``, as ``SegLocalVisualizer.add_datasample`` does.

        Args:
            name: image name of the backends / window title.
            image: (H, W, 3) uint8 **RGB** (MMSegmentation's convention).
            data_sample: see :meth:`draw_refer_sample`.
            with_labels: accepted for compatibility; unused.
            backends: hand the picture to the vis backends; default: only
                without ``out_file`` (MMSegmentation's behaviour).

        Returns:
            the picture, (H', W', 3) uint8 BGR (None on the other ranks:
            only the main process draws, as in ``SegLocalVisualizer``).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image: expected an (H, W, 3) RGB array, got '
                             f'shape {image.shape}')
        picture = self.draw_refer_sample(
            np.ascontiguousarray(image[..., ::-1]), data_sample, draw_gt,
            draw_pred)
        rgb = np.ascontiguousarray(picture[..., ::-1])
        self.set_image(rgb)
        if show:
            self.show(rgb, win_name=name, wait_time=wait_time)
        if out_file is not None:
            atomic_write_image(out_file, picture)
        if backends or (backends is None and out_file is None):
            self.add_image(name, rgb, step)
        return picture
