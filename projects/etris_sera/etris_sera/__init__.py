"""ETRIS (Xu et al., ICCV 2023) as a SERA-MM project: the vision-language
bridge between frozen encoder blocks. Imported by the project's configs
through ``custom_imports``."""
from .bridge import ETRISBridge

__all__ = ['ETRISBridge']
