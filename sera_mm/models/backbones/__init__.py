"""Backbone wrappers: pretrained encoders run block by block with
adapters inserted after selected blocks."""
from .base_adapter_backbone import BaseAdapterBackbone
from .clip_vision import CLIPVisionBackbone
from .dinov2 import DINOv2Backbone
from .mobilenet_v2 import MobileNetV2, MobileNetV2Backbone

__all__ = [
    'BaseAdapterBackbone', 'CLIPVisionBackbone', 'DINOv2Backbone',
    'MobileNetV2', 'MobileNetV2Backbone'
]
