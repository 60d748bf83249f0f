"""Expert routers: text- and vision-conditioned mixing weights, and the
sparse mixture that applies them."""
from .expert_router import (ExpertRouter, RoutingOutput, RoutingRecorder,
                            recomputation)
from .mixture import mix_experts

__all__ = [
    'ExpertRouter', 'RoutingOutput', 'RoutingRecorder', 'mix_experts',
    'recomputation'
]
