"""SERAPaperAdapter: the SERA paper's own adapter design (arXiv
2603.12538), with the same contract as :class:`SERAAdapter`."""
from typing import Sequence

import torch.nn as nn
from torch import Tensor

from sera_mm.models.routers.mixture import mix_experts
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS
from .paper_experts import PaperMultiScaleBranches
from .sera_adapter import SERAAdapter

#: The paper's router for the adapter: logits from the grid only,
#: ``r = W2 act(W1 GAP(G))``.
PAPER_ADAPTER_ROUTER = dict(type='ExpertRouter', condition='visual')


def scaled_expert_weights(router: nn.Module, coefficients: Sequence[float],
                          grid: Tensor, sentence: Tensor) -> Tensor:
    """The paper's routed weights times its fixed coefficients,
    ``[a_s * w_s, a_b * w_b]``: (B, E) or (B, E, h, w), the weights
    :func:`mix_experts` mixes the adapter's experts with.

    Args:
        router: the adapter's router over the E experts.
        coefficients: the E fixed factors (the paper's 0.25 and 0.15).
        grid: G, (B, d, h, w).
        sentence: (B, C_t).
    """
    weights = router(grid, sentence)  # (B, E) | (B, E, h, w)
    coeffs = weights.new_tensor(tuple(coefficients))
    return weights * coeffs.reshape((1, -1) + (1, ) * (weights.dim() - 2))


@MODELS.register_module()
class SERAPaperAdapter(SERAAdapter):
    """The SERA paper's adapter for a block's token sequence.

    Data flow, for tokens (B, N, C) with N = num_prefix + h * w::

        x = down(LN(tokens))                          # (B, N, d)
        G = patch part of x as a grid                  # (B, d, h, w)
        G_rich = multiscale(G)                         # (B, d, h, w)
        [w_s, w_b] = router(G, sentence)               # (B, 2)
        G_corr = G_rich + a_s * w_s * S(G) + a_b * w_b * B(G)
        q = G_corr as tokens (B, hw, d); q = q + attn(q, words, pad_mask)
        delta = up(GELU(dropout(q))) * scale           # (B, hw, C)
        out = tokens + [0 for prefix tokens ; delta for patch tokens]

    with S the spatial and B the boundary expert (:mod:`.paper_experts`),
    ``a_s = spatial_weight`` (0.25) and ``a_b = boundary_weight`` (0.15).
    The routed part is :func:`mix_experts` over [S, B] with the weights
    ``[a_s * w_s, a_b * w_b]``, so top-k routing runs only the selected
    expert(s) per sample.

    Everything else is :class:`SERAAdapter`'s (this class is a subclass and
    reuses its layers, input checks and routing bookkeeping): the prefix
    tokens (CLS, registers) get a zero delta, the up-projection is
    zero-initialised, so the adapter returns its input bit-exactly at
    initialisation, and ``router`` / ``expert_names`` (['spatial',
    'boundary']) are exposed the same way.

    Args:
        in_channels: token width C.
        text_channels: word/sentence feature width C_t.
        hidden_channels: adapter width d (divisible by ``num_heads``).
        router: router config over the two experts; ``in_channels`` (= d),
            ``text_channels`` and ``num_experts`` are filled in. The
            default is the paper's visual-only router.
        num_heads: heads of the word cross-attention.
        spatial_weight: a_s, the fixed factor of the spatial expert.
        boundary_weight: a_b, the fixed factor of the boundary expert.
        spatial_beta: identity weight inside the spatial expert (0.3).
        boundary_alpha: depthwise weight inside the boundary expert (0.1).
        spatial_act: ``torch.nn`` class name of the spatial expert's
            activation.
        init_scale: initial value of the output scale.
        learnable_scale: make the scale a learnable scalar (else a fixed
            buffer).
        dropout: dropout before the up-projection and in the attention.

    Attributes:
        router: the expert router (``router.expert_names`` are
            ['spatial', 'boundary']).
        expert_names: ['spatial', 'boundary'].
        experts: [spatial expert, boundary expert].
        multiscale: the always-on G_rich module.
    """

    def __init__(self,
                 in_channels: int,
                 text_channels: int,
                 hidden_channels: int = 64,
                 router: dict = PAPER_ADAPTER_ROUTER,
                 num_heads: int = 4,
                 spatial_weight: float = 0.25,
                 boundary_weight: float = 0.15,
                 spatial_beta: float = 0.3,
                 boundary_alpha: float = 0.1,
                 spatial_act: str = 'GELU',
                 init_scale: float = 1.0,
                 learnable_scale: bool = True,
                 dropout: float = 0.0) -> None:
        experts = (
            dict(type='PaperAdapterSpatialExpert', name='spatial',
                 beta=spatial_beta, act=spatial_act),
            dict(type='PaperAdapterBoundaryExpert', name='boundary',
                 alpha=boundary_alpha),
        )
        super().__init__(
            in_channels,
            text_channels,
            hidden_channels=hidden_channels,
            experts=experts,
            router=router,
            num_heads=num_heads,
            init_scale=init_scale,
            learnable_scale=learnable_scale,
            dropout=dropout)
        self.multiscale = PaperMultiScaleBranches(hidden_channels)
        self.expert_coefficients = (float(spatial_weight),
                                    float(boundary_weight))

    def extra_repr(self) -> str:
        a_s, a_b = self.expert_coefficients
        return f'spatial_weight={a_s:g}, boundary_weight={a_b:g}'

    def _refine_grid(self, grid: Tensor, text: TextFeatures) -> Tensor:
        """G (B, d, h, w) -> G_corr (B, d, h, w)."""
        scaled = scaled_expert_weights(self.router, self.expert_coefficients,
                                       grid, text.sentence)
        out = self.multiscale(grid)
        if bool((scaled == 0).all()):  # e.g. top-1 onto a 0-weight expert
            return out
        return out + mix_experts(self.experts, grid, scaled)


__all__ = ['SERAPaperAdapter', 'PAPER_ADAPTER_ROUTER', 'scaled_expert_weights']
