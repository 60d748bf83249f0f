"""``ReferVisualizationHook``: draw the first predictions of a validation or
test run as ``[image + expression | GT | prediction (IoU) | router
weights]`` pictures, save them as PNG and hand them to the visualizer's
backends (TensorBoard, ...)."""
import logging
import os
import os.path as osp
import re
from typing import Any, Dict, Optional, Sequence

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from sera_mm.registry import HOOKS
from sera_mm.utils.image_io import read_image
from sera_mm.visualization.refer_local_visualizer import (ReferLocalVisualizer,
                                                          sample_mask,
                                                          sample_meta)
from sera_mm.visualization.refer_visualizer import PLACEHOLDER_GRAY


def _safe(value: Any) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '-', str(value))


@HOOKS.register_module()
class ReferVisualizationHook(Hook):
    """Draw the first ``num_samples`` predictions of every ``interval``-th
    validation (and every ``interval``-th test) run.

    Each picture is ``[image with the expression | ground truth overlay |
    prediction overlay with its IoU | bar chart of the routers' expert
    weights]``, drawn at the image's original resolution (read from the
    sample's ``img_path``) and scaled to ``panel_height``. It is written to
    ``<out_dir>/<epoch_E or iter_I>/<idx>_sent<sent_id>.png`` and passed to
    ``runner.visualizer.add_image`` (as RGB) with the epoch or iteration as
    step. Only the main process draws (its own share of the samples under
    distributed evaluation).

    Generalised RIS samples are drawn like the others: an empty ground
    truth or prediction is titled as such ("ground truth: no target" with
    the metainfo ``no_target``), an empty prediction of a no-target sample
    has IoU 1, and a no-target head's ``no_target_score`` is printed on the
    prediction panel.

    Missing pieces do not stop the run: without ``routing`` metainfo the bar
    chart is left out; without a readable ``img_path`` a gray placeholder of
    the masks' size is drawn (warned once); without ``gt_sem_seg`` the GT
    panel and the IoU are left out.

    Args:
        interval: draw every ``interval``-th validation/test run (1: all).
        num_samples: number of pictures per run.
        out_dir: output folder; default ``<work_dir>/vis/<val|test>``.
        draw_router: draw the router bar chart when routing is present.
        router_mode: ``'average'`` (one bar per expert name), ``'group'``
            (one bar group per router group) or ``'router'`` (one per
            router); see :func:`~sera_mm.visualization.routing_bar_data`.
        panel_height: height of each panel in pixels.
        draw: False turns the hook off (``tools/test.py --show-dir`` sets
            it to True).
    """

    priority = 'NORMAL'

    def __init__(self,
                 interval: int = 1,
                 num_samples: int = 8,
                 out_dir: Optional[str] = None,
                 draw_router: bool = True,
                 router_mode: str = 'average',
                 panel_height: int = 256,
                 draw: bool = True) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be an int >= 1, got {interval!r}')
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError('num_samples must be an int >= 0, got '
                             f'{num_samples!r}')
        if router_mode not in ('average', 'group', 'router'):
            raise ValueError("router_mode must be 'average', 'group' or "
                             f"'router', got {router_mode!r}")
        if panel_height < 16:
            raise ValueError(f'panel_height must be >= 16, got {panel_height}')
        self.interval = interval
        self.draw = bool(draw)
        self.num_samples = num_samples
        self.out_dir = out_dir
        self.draw_router = draw_router
        self.router_mode = router_mode
        self.panel_height = int(panel_height)
        self._runs = {'val': 0, 'test': 0}
        self._active = False
        self._drawn = 0
        self._folder = ''
        self._step = 0
        self._warned_image = False
        self._drawer: Optional[ReferLocalVisualizer] = None
        self._mode = 'val'
        self._dir = ''
        #: PNG files written by the current run.
        self.written: list = []

    # -- run bookkeeping -------------------------------------------------
    def _step_of(self, runner) -> tuple:
        """(folder name, step) from the training progress."""
        loop = getattr(runner, '_train_loop', None)
        by_epoch = loop is not None and not isinstance(loop, dict) and \
            hasattr(loop, 'max_epochs') and 'Epoch' in type(loop).__name__
        if by_epoch:
            return f'epoch_{runner.epoch}', int(runner.epoch)
        return f'iter_{runner.iter}', int(runner.iter)

    def _start(self, runner, mode: str) -> None:
        self._runs[mode] += 1
        self._active = (self.draw and self.num_samples > 0
                        and is_main_process()
                        and (self._runs[mode] - 1) % self.interval == 0)
        self._drawn = 0
        self.written = []
        self._mode = mode
        self._folder, self._step = self._step_of(runner)
        if self._active:
            base = self.out_dir or osp.join(runner.work_dir, 'vis', mode)
            self._dir = osp.join(base, self._folder)
            os.makedirs(self._dir, exist_ok=True)

    def before_val_epoch(self, runner) -> None:
        self._start(runner, 'val')

    def before_test_epoch(self, runner) -> None:
        self._start(runner, 'test')

    def after_val_iter(self, runner, batch_idx: int,
                       data_batch: Optional[dict] = None,
                       outputs: Optional[Sequence] = None) -> None:
        self._collect(runner, outputs)

    def after_test_iter(self, runner, batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        self._collect(runner, outputs)

    # -- drawing -----------------------------------------------------------
    def _collect(self, runner, outputs: Optional[Sequence]) -> None:
        if not self._active:
            return
        for sample in outputs or []:
            if self._drawn >= self.num_samples:
                return
            self._draw(runner, sample, self._drawn)
            self._drawn += 1

    def _read_image(self, meta: Dict[str, Any], shape) -> np.ndarray:
        """The sample's image through the one image path (pixels as the
        dataset read them), or a gray placeholder (warned once)."""
        path = meta.get('img_path')
        image = None
        if path:
            try:
                image = read_image(str(path))
            except (OSError, ValueError):
                image = None
        if image is None:
            if not self._warned_image:
                print_log(f'ReferVisualizationHook: cannot read img_path '
                          f'{path!r}; drawing a gray placeholder (warned '
                          'once)', logger='current',
                          level=logging.WARNING)
                self._warned_image = True
            if shape is None:
                ori = meta.get('ori_shape') or (self.panel_height,
                                                self.panel_height)
                shape = tuple(int(s) for s in ori[:2])
            image = np.full((*shape, 3), PLACEHOLDER_GRAY, np.uint8)
        return image

    def _visualizer(self, runner) -> ReferLocalVisualizer:
        """The drawer: a private :class:`ReferLocalVisualizer` with this
        hook's settings (its pictures go to the runner's visualizer's
        backends through :meth:`_draw`)."""
        if self._drawer is None:
            self._drawer = ReferLocalVisualizer(
                name=f'refer_visualization_hook_{id(self)}',
                panel_height=self.panel_height, router_mode=self.router_mode,
                draw_router=self.draw_router)
        return self._drawer

    def _draw(self, runner, sample: Any, idx: int) -> None:
        meta = sample_meta(sample)
        gt = sample_mask(sample, 'gt_sem_seg')
        pred = sample_mask(sample, 'pred_sem_seg')
        ref = pred if pred is not None else gt
        image = self._read_image(meta, None if ref is None else ref.shape)
        sent_id = _safe(meta.get('sent_id', 'na'))
        name = f'{idx:02d}_sent{sent_id}'
        path = osp.join(self._dir, f'{name}.png')
        visualizer = getattr(runner, 'visualizer', None)
        # no '/' in the name: LocalVisBackend writes <name>_<step>.png flat
        tag = f'{self._mode}_refer_{name}'
        rgb = np.ascontiguousarray(image[..., ::-1])
        if isinstance(visualizer, ReferLocalVisualizer) and (
                visualizer.panel_height, visualizer.router_mode,
                visualizer.draw_router) == (self.panel_height,
                                            self.router_mode,
                                            self.draw_router):
            # the runner's visualizer draws, writes and logs
            visualizer.add_datasample(tag, rgb, sample, out_file=path,
                                      step=self._step, backends=True)
        else:  # another visualizer (or other settings): draw here, log there
            picture = self._visualizer(runner).add_datasample(
                tag, rgb, sample, out_file=path, backends=False)
            if visualizer is not None:
                visualizer.add_image(tag, picture[..., ::-1].copy(),
                                     step=self._step)
        self.written.append(path)
