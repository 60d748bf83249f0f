"""Inference API: build a model, segment referred regions, save results."""
from sera_mm.utils.image_io import load_image, as_bgr_uint8
from .inference import build_inference_pipeline, inference_model, init_model
from .prediction_io import (collect_jobs, draw_overlay, prediction_mask,
                            prediction_record, save_prediction,
                            save_predictions, unique_stems,
                            write_mask_and_overlay, write_predictions,
                            write_predictions_json)
from .rendering import PredictionView, render_predictions, segment_and_render

__all__ = [
    'init_model', 'inference_model', 'build_inference_pipeline',
    'save_prediction', 'save_predictions', 'draw_overlay', 'prediction_mask',
    'load_image', 'as_bgr_uint8', 'prediction_record',
    'write_mask_and_overlay', 'write_predictions', 'write_predictions_json',
    'collect_jobs', 'unique_stems', 'PredictionView', 'render_predictions',
    'segment_and_render'
]
