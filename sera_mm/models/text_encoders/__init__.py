from .text_features import TextFeatures

__all__ = ['TextFeatures']
