"""Drawing helpers for referring segmentation: one picture per expression
with four panels, ``[image + expression | GT overlay | prediction overlay
(+ IoU) | router expert weights]``.

Everything is drawn with OpenCV on BGR uint8 arrays (no display needed).
OpenCV's Hershey fonts only have ASCII glyphs: other characters are shown as
``?``.
"""
import re
import textwrap
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

#: BGR colours.
GT_COLOR: Tuple[int, int, int] = (60, 200, 60)
PRED_COLOR: Tuple[int, int, int] = (0, 140, 255)
BAR_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214),
    (189, 103, 148), (75, 86, 140), (194, 119, 227), (127, 127, 127),
    (34, 189, 188), (207, 190, 23))
PLACEHOLDER_GRAY = 128

_FONT = cv2.FONT_HERSHEY_SIMPLEX

#: Routing metainfo: ``{router_name: {'experts': [...], 'weights': [...]}}``.
Routing = Mapping[str, Mapping[str, Sequence]]


def ascii_text(text: str) -> str:
    """``text`` with non-ASCII characters replaced by ``?``."""
    return str(text).encode('ascii', 'replace').decode('ascii')


def router_group(router_name: str) -> str:
    """The group of a router: its name without numeric components, e.g.
    ``'backbone.adapters.3.router'`` -> ``'backbone.adapters.router'``,
    ``'neck.routers.0'`` -> ``'neck.routers'``."""
    parts = [p for p in str(router_name).split('.') if not re.fullmatch(
        r'\d+', p)]
    return '.'.join(parts) or str(router_name)


def check_routing_entry(name: str, entry: Mapping) -> Tuple[List[str],
                                                            List[float]]:
    """Validate one routing entry and return its (experts, weights).

    Raises:
        ValueError: keys missing or lengths differ.
    """
    if not isinstance(entry, Mapping) or 'experts' not in entry or \
            'weights' not in entry:
        raise ValueError(f'routing entry {name!r} must be a dict with '
                         f'"experts" and "weights", got {entry!r}')
    experts = [str(e) for e in entry['experts']]
    weights = np.asarray(entry['weights'], dtype=np.float64).reshape(-1)
    if len(experts) != weights.size:
        raise ValueError(f'routing entry {name!r}: {len(experts)} experts '
                         f'but {weights.size} weights')
    return experts, weights.tolist()


def expert_weights_by_name(routing: Routing) -> 'OrderedDict[str, float]':
    """Average each expert's weight over the routers that have an expert of
    that name (adapter and neck experts have different names, so each is
    averaged over its own routers).

    Returns:
        ``{expert: mean weight}`` in order of first appearance.
    """
    sums: 'OrderedDict[str, List[float]]' = OrderedDict()
    for name, entry in routing.items():
        experts, weights = check_routing_entry(name, entry)
        for expert, weight in zip(experts, weights):
            sums.setdefault(expert, []).append(weight)
    return OrderedDict((k, float(np.mean(v))) for k, v in sums.items())


def overlay_mask(image: np.ndarray,
                 mask: np.ndarray,
                 color: Sequence[int],
                 alpha: float = 0.5,
                 thickness: Optional[int] = None) -> np.ndarray:
    """Blend ``mask`` in ``color`` onto ``image`` and outline it.

    Args:
        image: (H, W, 3) uint8 BGR.
        mask: (H, W) bool (or anything ``> 0`` is foreground).
        color: BGR colour.
        alpha: opacity of the colour inside the mask.
        thickness: outline width in pixels; default ``min(H, W) / 150``
            (at least 1).

    Returns:
        (H, W, 3) uint8 BGR copy.

    Raises:
        ValueError: sizes differ.
    """
    mask = np.asarray(mask) > 0
    if mask.shape != image.shape[:2]:
        raise ValueError(f'mask shape {mask.shape} does not match image '
                         f'shape {image.shape[:2]}')
    out = image.copy()
    colour = np.asarray(color, dtype=np.float32)
    out[mask] = (out[mask].astype(np.float32) * (1 - alpha) +
                 colour * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    if thickness is None:
        thickness = max(1, round(min(image.shape[:2]) / 150))
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color),
                     int(thickness))
    return out


def draw_overlay(image: np.ndarray,
                 mask: np.ndarray,
                 text: str = '',
                 color: Sequence[int] = PRED_COLOR,
                 alpha: float = 0.5) -> np.ndarray:
    """The overlay picture of one prediction (what ``tools/infer.py``, the
    ONNX tool and the demo show): ``mask`` blended onto ``image`` and
    outlined (:func:`overlay_mask`), with ``text`` on a black banner above
    the picture.

    Args:
        image: (H, W, 3) uint8 BGR.
        mask: (H, W) bool.
        text: the expression (non-ASCII characters shown as '?'); no
            banner when empty.
        color: BGR colour of the region.
        alpha: opacity of the region colour.

    Returns:
        (H + banner, W, 3) uint8 BGR.

    Raises:
        ValueError: ``mask`` and ``image`` sizes differ.
    """
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f'mask shape {mask.shape} does not match image '
                         f'shape {image.shape[:2]}')
    out = overlay_mask(image, mask, color, alpha,
                       thickness=max(1, round(min(image.shape[:2]) / 200)))
    if not text:
        return out
    width = image.shape[1]
    scale = max(0.35, width / 900)
    (char_w, char_h), base = cv2.getTextSize('M', _FONT, scale, 1)
    lines = textwrap.wrap(ascii_text(text),
                          max(8, width // max(char_w, 1) - 1))
    line_h = char_h + base + 4
    banner = np.zeros((line_h * len(lines) + 6, width, 3), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(banner, line, (4, 4 + char_h + i * line_h), _FONT,
                    scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([banner, out], axis=0)


def draw_routing_chart(routing: Optional[Routing],
                       height: int = 240,
                       width: int = 360,
                       mode: str = 'average',
                       title: Optional[str] = None) -> Optional[np.ndarray]:
    """The router bar chart of one prediction (:func:`routing_bar_data` +
    :func:`draw_router_bars`), or None without routing."""
    if not routing:
        return None
    weights, experts = routing_bar_data(routing, mode)
    return draw_router_bars(weights, experts, height, width,
                            title=title or f'expert weights ({mode})')


def _text_scale(width: int) -> float:
    return float(np.clip(width / 600, 0.35, 0.8))


def draw_caption(image: np.ndarray, text: str,
                 position: str = 'top') -> np.ndarray:
    """Write ``text`` (wrapped) on a dark translucent strip over the top or
    bottom of ``image``; returns a copy of the same shape."""
    out = image.copy()
    text = ascii_text(text).strip()
    if not text:
        return out
    h, w = out.shape[:2]
    scale = _text_scale(w)
    (cw, ch), base = cv2.getTextSize('M', _FONT, scale, 1)
    lines = textwrap.wrap(text, max(6, w // max(cw, 1) - 1))
    line_h = ch + base + 4
    box_h = min(h, line_h * len(lines) + 6)
    y0 = 0 if position == 'top' else h - box_h
    strip = out[y0:y0 + box_h].astype(np.float32) * 0.35
    out[y0:y0 + box_h] = strip.astype(np.uint8)
    for i, line in enumerate(lines):
        y = y0 + 4 + ch + i * line_h
        if y > y0 + box_h:
            break
        cv2.putText(out, line, (4, y), _FONT, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def draw_router_bars(weights: Mapping[str, Sequence[float]],
                     experts: Sequence[str],
                     height: int,
                     width: int,
                     title: str = 'router weights') -> np.ndarray:
    """A horizontal bar chart of expert weights on a white canvas.

    Args:
        weights: ``{group name: per-expert weights}`` (aligned with
            ``experts``; NaN means the group has no such expert). One group
            draws one bar per expert; several groups draw a block of bars
            per expert, one colour per group, with a legend.
        experts: expert names (one row block each).
        height: canvas height in pixels.
        width: canvas width in pixels.
        title: text on top.

    Returns:
        (height, width, 3) uint8 BGR.
    """
    canvas = np.full((height, width, 3), 255, np.uint8)
    scale = _text_scale(width) * 0.9
    (_, ch), base = cv2.getTextSize('M', _FONT, scale, 1)
    line_h = ch + base + 4
    cv2.putText(canvas, ascii_text(title), (4, ch + 4), _FONT, scale,
                (0, 0, 0), 1, cv2.LINE_AA)
    groups = list(weights.keys())
    if not experts or not groups:
        return canvas
    legend_h = line_h * len(groups) if len(groups) > 1 else 0
    top, bottom = line_h + 4, height - legend_h - 4
    label_w = min(width // 3, max(cv2.getTextSize(
        ascii_text(e), _FONT, scale, 1)[0][0] for e in experts) + 8)
    bar_x0, bar_x1 = label_w, width - 48
    block_h = max(1.0, (bottom - top) / len(experts))
    bar_h = max(1.0, block_h * 0.8 / len(groups))
    for i, expert in enumerate(experts):
        y_block = top + i * block_h
        cv2.putText(canvas, ascii_text(expert)[:24],
                    (2, int(y_block + block_h / 2 + ch / 2)), _FONT, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
        for g, group in enumerate(groups):
            value = float(weights[group][i])
            if not np.isfinite(value):
                continue
            y = int(y_block + block_h * 0.1 + g * bar_h)
            x1 = bar_x0 + int(round(np.clip(value, 0, 1) *
                                    max(bar_x1 - bar_x0, 1)))
            colour = BAR_COLORS[g % len(BAR_COLORS)]
            cv2.rectangle(canvas, (bar_x0, y),
                          (max(x1, bar_x0 + 1), int(y + bar_h) - 1), colour,
                          -1)
            if len(groups) == 1 or bar_h >= ch:
                cv2.putText(canvas, f'{value:.2f}', (x1 + 3, int(y + bar_h)
                                                      - 2), _FONT,
                            scale * 0.8, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(canvas, (bar_x0, top), (bar_x0, bottom), (0, 0, 0), 1)
    if len(groups) > 1:
        for g, group in enumerate(groups):
            y = bottom + 4 + g * line_h
            colour = BAR_COLORS[g % len(BAR_COLORS)]
            cv2.rectangle(canvas, (4, y), (4 + ch, y + ch), colour, -1)
            cv2.putText(canvas, ascii_text(group)[:40], (8 + ch, y + ch),
                        _FONT, scale * 0.8, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def routing_bar_data(routing: Routing, mode: str = 'average'
                     ) -> Tuple['OrderedDict[str, List[float]]', List[str]]:
    """Bar-chart data from a prediction's routing metainfo.

    Args:
        routing: ``{router_name: {'experts': [...], 'weights': [...]}}``.
        mode: ``'average'``: one bar per expert name, averaged over the
            routers with that expert; ``'group'``: one bar group per router
            group (routers averaged within, see :func:`router_group`);
            ``'router'``: one bar group per router.

    Returns:
        (weights ``{group: [w per expert or NaN]}``, expert names).
    """
    if mode not in ('average', 'group', 'router'):
        raise ValueError("mode must be 'average', 'group' or 'router', got "
                         f'{mode!r}')
    if mode == 'average':
        means = expert_weights_by_name(routing)
        return OrderedDict(mean=list(means.values())), list(means.keys())
    experts: List[str] = []
    per: 'OrderedDict[str, Dict[str, List[float]]]' = OrderedDict()
    for name, entry in routing.items():
        names, weights = check_routing_entry(name, entry)
        key = router_group(name) if mode == 'group' else str(name)
        slot = per.setdefault(key, {})
        for expert, weight in zip(names, weights):
            if expert not in experts:
                experts.append(expert)
            slot.setdefault(expert, []).append(weight)
    out = OrderedDict()
    for key, slot in per.items():
        out[key] = [float(np.mean(slot[e])) if e in slot else float('nan')
                    for e in experts]
    return out, experts


def resize_to_height(image: np.ndarray, height: int,
                     interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize keeping the aspect ratio so that the height is ``height``."""
    h, w = image.shape[:2]
    new_w = max(1, int(round(w * height / h)))
    return cv2.resize(image, (new_w, height), interpolation=interpolation)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two binary masks (1.0 when both are empty)."""
    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    if pred.shape != gt.shape:
        raise ValueError(f'pred shape {pred.shape} does not match gt shape '
                         f'{gt.shape}')
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


def _fit_mask(mask: Optional[np.ndarray], shape: Tuple[int, int]
              ) -> Optional[np.ndarray]:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[0]
    mask = mask > 0
    if mask.shape != tuple(shape):
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]),
                          interpolation=cv2.INTER_NEAREST) > 0
    return mask


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    """Add a white title strip above ``panel``."""
    h, w = panel.shape[:2]
    scale = _text_scale(h)  # same for every panel of one height
    (_, ch), base = cv2.getTextSize('M', _FONT, scale, 1)
    strip = np.full((ch + base + 8, w, 3), 255, np.uint8)
    cv2.putText(strip, ascii_text(title), (4, ch + 4), _FONT, scale,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def compose_refer_panel(image: np.ndarray,
                        text: str = '',
                        gt_mask: Optional[np.ndarray] = None,
                        pred_mask: Optional[np.ndarray] = None,
                        routing: Optional[Routing] = None,
                        panel_height: int = 256,
                        router_mode: str = 'average',
                        iou: Optional[float] = None,
                        no_target: Optional[bool] = None,
                        no_target_score: Optional[float] = None
                        ) -> np.ndarray:
    """One picture for one expression.

    Panels, left to right, all ``panel_height`` high: the image with the
    expression written on it, the ground truth overlaid (if given), the
    prediction overlaid with its IoU (if given), and the routers' expert
    weights (if ``routing`` is given and not empty).

    Args:
        image: (H, W, 3) uint8 BGR at the masks' resolution (masks of
            another size are resized nearest to it).
        text: the referring expression.
        gt_mask: (H, W) or (1, H, W) ground truth, > 0 is foreground.
        pred_mask: (H, W) or (1, H, W) prediction, > 0 is foreground.
        routing: routing metainfo, see :func:`routing_bar_data`.
        panel_height: height of every panel in pixels.
        router_mode: see :func:`routing_bar_data`.
        iou: IoU to print on the prediction; computed from the masks when
            None and both are given (1 when both are empty: a correctly
            rejected no-target expression).
        no_target: the expression names nothing (generalised RIS): the GT
            panel is titled "ground truth: no target". An empty GT without
            the flag is titled "ground truth: empty".
        no_target_score: a no-target head's probability, printed on the
            prediction panel ("NT 0.93"); an empty prediction is titled
            "prediction: empty".

    Returns:
        (panel_height + title strip, W_total, 3) uint8 BGR.

    Raises:
        ValueError: ``image`` is not (H, W, 3) uint8.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('image must be an (H, W, 3) uint8 array, got '
                         f'shape {image.shape} dtype {image.dtype}')
    shape = image.shape[:2]
    gt = _fit_mask(gt_mask, shape)
    pred = _fit_mask(pred_mask, shape)
    panels = [_titled(resize_to_height(
        draw_caption(image, text, 'bottom'), panel_height), 'image')]
    if gt is not None:
        title = 'ground truth'
        if no_target:
            title += ': no target'
        elif not gt.any():
            title += ': empty'
        panels.append(_titled(resize_to_height(
            overlay_mask(image, gt, GT_COLOR), panel_height), title))
    if pred is not None:
        if iou is None and gt is not None:
            iou = mask_iou(pred, gt)
        title = 'prediction' + ('' if pred.any() else ': empty')
        title += f'  IoU {iou:.3f}' if iou is not None else ''
        if no_target_score is not None:
            title += f'  NT {float(no_target_score):.2f}'
        panels.append(_titled(resize_to_height(
            overlay_mask(image, pred, PRED_COLOR), panel_height), title))
    if routing:
        weights, experts = routing_bar_data(routing, router_mode)
        width = max(panel_height, int(panel_height * 1.25))
        panels.append(_titled(
            draw_router_bars(weights, experts, panel_height, width,
                             title=f'experts ({router_mode})'), 'router'))
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row: List[np.ndarray] = []
    for i, panel in enumerate(panels):
        if i:
            row.append(gap)
        row.append(panel)
    return np.concatenate(row, axis=1)
