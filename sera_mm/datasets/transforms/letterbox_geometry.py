"""Letterbox geometry and a numpy/OpenCV letterbox, without torch or mmcv.

:class:`~sera_mm.datasets.transforms.letterbox.Letterbox` (the data
pipeline) takes its output size from :func:`letterbox_hw`; the ONNX Runtime
tools letterbox with :func:`letterbox_image`, which gives the same pixels
(mmcv's ``imresize``/``impad`` with the OpenCV backend are
``cv2.resize``/``cv2.copyMakeBorder``).
"""
from typing import Dict, Tuple, Union

import cv2
import numpy as np

#: mmcv interpolation names -> OpenCV flags (those Letterbox accepts).
CV2_INTERPOLATION = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}


def letterbox_hw(h: int, w: int, size: int) -> Tuple[int, int]:
    """The (height, width) an (h, w) image is resized to before padding:
    the long side becomes ``size``, the ratio is kept (each side >= 1)."""
    scale = size / max(h, w)
    return (min(size, max(1, int(round(h * scale)))),
            min(size, max(1, int(round(w * scale)))))


def letterbox_image(img: np.ndarray,
                    size: int,
                    pad_val: Union[int, float] = 0,
                    interpolation: str = 'bilinear'
                    ) -> Tuple[np.ndarray, Dict[str, object]]:
    """Letterbox an (H, W[, C]) image as the data pipeline does.

    Returns:
        ``(out, meta)``: the (size, size[, C]) image and ``dict(ori_shape,
        img_shape, img_padding_size, scale_factor)`` as the pipeline's
        metainfo.
    """
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'img: expected an (H, W[, C]) array, got shape '
                         f'{img.shape}')
    if interpolation not in CV2_INTERPOLATION:
        raise ValueError(f'interpolation must be one of '
                         f'{sorted(CV2_INTERPOLATION)}, got {interpolation!r}')
    h, w = img.shape[:2]
    nh, nw = letterbox_hw(h, w, size)
    resized = cv2.resize(img, (nw, nh),
                         interpolation=CV2_INTERPOLATION[interpolation])
    out = cv2.copyMakeBorder(resized, 0, size - nh, 0, size - nw,
                             cv2.BORDER_CONSTANT, value=pad_val)
    meta = dict(ori_shape=(h, w), img_shape=(nh, nw),
                img_padding_size=[0, size - nw, 0, size - nh],
                scale_factor=(nw / w, nh / h))
    return out, meta


__all__ = ['letterbox_hw', 'letterbox_image',
           'CV2_INTERPOLATION']
