"""Expert routers: text- and vision-conditioned mixing weights."""
from .expert_router import ExpertRouter

__all__ = ['ExpertRouter']
