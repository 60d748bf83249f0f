"""Write a prediction as a binary mask PNG and an overlay picture."""
import os
import os.path as osp
import textwrap
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np
from mmseg.structures import SegDataSample

from sera_mm.engine.atomic_io import atomic_write_image
from .image_io import ImageInput, load_image_bgr

#: BGR colour of the predicted region in overlays.
MASK_COLOR: Tuple[int, int, int] = (0, 140, 255)


def prediction_mask(sample: SegDataSample) -> np.ndarray:
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


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only.
    return text.encode('ascii', 'replace').decode('ascii')


def draw_overlay(image: np.ndarray,
                 mask: np.ndarray,
                 text: str = '',
                 color: Sequence[int] = MASK_COLOR,
                 alpha: float = 0.5) -> np.ndarray:
    """Blend ``mask`` onto ``image``, outline it and write ``text`` on a
    banner above the picture.

    Args:
        image: (H, W, 3) uint8 BGR.
        mask: (H, W) bool.
        text: the expression (non-ASCII characters shown as '?').
        color: BGR colour of the region.
        alpha: opacity of the region colour.

    Returns:
        (H + banner, W, 3) uint8 BGR.

    Raises:
        ValueError: ``mask`` and ``image`` sizes differ.
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f'mask shape {mask.shape} does not match image '
                         f'shape {image.shape[:2]}')
    out = image.copy()
    colour = np.array(color, dtype=np.float32)
    region = out[mask].astype(np.float32)
    out[mask] = (region * (1 - alpha) + colour * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(min(image.shape[:2]) / 200))
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color),
                     thickness)
    if not text:
        return out
    width = image.shape[1]
    scale = max(0.35, width / 900)
    (char_w, char_h), base = cv2.getTextSize('M', cv2.FONT_HERSHEY_SIMPLEX,
                                             scale, 1)
    lines = textwrap.wrap(_ascii(text), max(8, width // max(char_w, 1) - 1))
    line_h = char_h + base + 4
    banner = np.zeros((line_h * len(lines) + 6, width, 3), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(banner, line, (4, 4 + char_h + i * line_h),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return np.concatenate([banner, out], axis=0)


def save_prediction(image: ImageInput, sample: SegDataSample, out_dir: str,
                    stem: str) -> Dict[str, str]:
    """Write ``<out_dir>/<stem>_mask.png`` (0/255) and
    ``<out_dir>/<stem>_overlay.png`` (image + coloured mask + expression),
    each atomically (temporary file + rename).

    Args:
        image: the image the prediction was made on (path, BGR array or PIL).
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
    if not stem or osp.basename(stem) != stem:
        raise ValueError(f'stem must be a plain file name, got {stem!r}')
    img, _ = load_image_bgr(image)
    mask = prediction_mask(sample)
    if mask.shape != img.shape[:2]:
        raise ValueError(f'prediction of shape {mask.shape} does not match '
                         f'the image of shape {img.shape[:2]}')
    os.makedirs(out_dir, exist_ok=True)
    paths = dict(mask=osp.join(out_dir, f'{stem}_mask.png'),
                 overlay=osp.join(out_dir, f'{stem}_overlay.png'))
    atomic_write_image(paths['mask'], mask.astype(np.uint8) * 255)
    atomic_write_image(
        paths['overlay'],
        draw_overlay(img, mask, str(sample.metainfo.get('text', ''))))
    return paths
