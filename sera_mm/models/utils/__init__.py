"""Helpers shared by the encoder wrappers: PET rules, OpenAI CLIP
checkpoint conversion and an offline CLIP tokenizer."""
from .clip_tokenizer import build_clip_tokenizer
from .openai_clip import convert_openai_clip, is_openai_clip_checkpoint
from .pet import (apply_pet, build_pet_predicate,
                  count_parameters, freeze_bn_stats)

__all__ = [
    'apply_pet', 'build_pet_predicate', 'count_parameters', 'freeze_bn_stats',
    'convert_openai_clip', 'is_openai_clip_checkpoint',
    'build_clip_tokenizer'
]
