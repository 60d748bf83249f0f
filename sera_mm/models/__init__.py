"""SERA-MM models: one subpackage per architectural role."""
from . import (adapters, backbones, heads, losses, necks, routers,  # noqa
               segmentors, text_encoders)
