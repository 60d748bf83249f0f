"""Inference API: build a model, segment referred regions, save results."""
from .image_io import load_image_bgr, to_bgr_uint8
from .inference import build_inference_pipeline, inference_model, init_model
from .prediction_io import draw_overlay, prediction_mask, save_prediction

__all__ = [
    'init_model', 'inference_model', 'build_inference_pipeline',
    'save_prediction', 'draw_overlay', 'prediction_mask', 'load_image_bgr',
    'to_bgr_uint8'
]
