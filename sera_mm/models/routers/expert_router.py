"""Expression-aware expert router.

The router turns a referring expression (its sentence feature) and the visual
grid it is applied to into mixing weights over E experts. One router sits in
every SERA-Adapter and one per level of the SERA-Fusion neck.
"""
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.registry import MODELS

_MODES = ('learned', 'uniform')
_BALANCE = ('cv', 'switch')


class _LiveWeights:
    """Holds the weights of the last forward (with their autograd graph)
    for :meth:`ExpertRouter.balance_loss`. Copies and pickles come back
    empty, so a router can be deep-copied (EMA, model copies) after a
    forward, which a non-leaf tensor attribute would forbid."""

    def __init__(self) -> None:
        self.value: Optional[Tensor] = None

    def __deepcopy__(self, memo: dict) -> '_LiveWeights':
        return _LiveWeights()

    def __getstate__(self) -> dict:
        return {'value': None}


@MODELS.register_module()
class ExpertRouter(nn.Module):
    """Softmax router over E experts conditioned on text and vision.

    Global routing (default) computes one weight vector per sample::

        logits = MLP([LN(sentence) ; LN(avgpool(visual))])      # (B, E)
        weights = softmax(logits / temperature)                  # (B, E)

    The first MLP layer on the concatenation is implemented as the sum of a
    sentence projection and a visual projection, which is the same linear map
    and lets per-location routing reuse it: with ``per_location=True`` the
    visual projection is applied at every grid location (a 1x1 conv) and the
    sentence projection is broadcast over the grid, giving logits
    (B, E, h, w) and a softmax over E at each location.

    ``top_k`` keeps the k largest weights (per sample, or per location) and
    renormalises them to sum to 1; the others are exactly 0 and the gradient
    flows through the kept ones. ``mode='uniform'`` is the no-routing
    ablation: every weight is exactly 1/E and the router owns no parameters.

    The last layer is initialised with a small normal (std 1e-2) weight and a
    zero bias, so the initial weights are close to uniform while gradients
    still reach every layer from the first step.

    Load balancing (:meth:`balance_loss`), computed from the weights of the
    last forward, with ``p_e`` the importance of expert e (its weight averaged
    over the batch and, for per-location routing, over locations; sum_e p_e
    = 1):

    - ``'cv'``: squared coefficient of variation of the importance, with the
      population variance: ``Var(p) / Mean(p)^2 = E * sum_e p_e^2 - 1``.
      It is 0 when usage is uniform and E - 1 when one expert takes all.
    - ``'switch'``: the Switch-Transformer loss ``E * sum_e f_e * p_e`` minus
      1, where ``f_e`` is the share of samples (locations) whose largest
      weight is expert e (not differentiable; the gradient flows through
      ``p_e``). 0 for balanced dispatch, E - 1 for a collapsed router.

    Args:
        in_channels: channels d of the visual grid.
        text_channels: channels C_t of the sentence feature.
        num_experts: number of experts E (>= 1).
        hidden_channels: hidden width of the routing MLP.
        temperature: softmax temperature (> 0); lower is sharper.
        top_k: keep only the k largest weights (1 <= k <= E), or None.
        per_location: route every grid location separately.
        mode: 'learned' or 'uniform'.
        balance: 'cv' or 'switch' (see above).

    Attributes:
        expert_names: names of the experts, in order (set by the owner;
            defaults to 'expert0', 'expert1', ...).
        last_weights: detached weights of the last forward, (B, E), averaged
            over locations for per-location routing; None before any forward.
    """

    def __init__(self,
                 in_channels: int,
                 text_channels: int,
                 num_experts: int,
                 hidden_channels: int = 64,
                 temperature: float = 1.0,
                 top_k: Optional[int] = None,
                 per_location: bool = False,
                 mode: str = 'learned',
                 balance: str = 'cv') -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(
                f'num_experts must be >= 1, got {num_experts}')
        if not temperature > 0:
            raise ValueError(
                f'temperature must be > 0, got {temperature}')
        if top_k is not None and not 1 <= top_k <= num_experts:
            raise ValueError(f'top_k must be in [1, num_experts={num_experts}]'
                             f' or None, got {top_k}')
        if mode not in _MODES:
            raise ValueError(f'mode must be one of {_MODES}, got {mode!r}')
        if balance not in _BALANCE:
            raise ValueError(
                f'balance must be one of {_BALANCE}, got {balance!r}')
        self.in_channels = in_channels
        self.text_channels = text_channels
        self.num_experts = num_experts
        self.hidden_channels = hidden_channels
        self.temperature = float(temperature)
        self.top_k = top_k
        self.per_location = per_location
        self.mode = mode
        self.balance = balance
        self.expert_names: List[str] = [
            f'expert{i}' for i in range(num_experts)
        ]
        self.last_weights: Optional[Tensor] = None
        self._live = _LiveWeights()

        if mode == 'learned':
            self.text_norm = nn.LayerNorm(text_channels)
            self.visual_norm = nn.LayerNorm(in_channels)
            self.text_proj = nn.Linear(text_channels, hidden_channels)
            self.visual_proj = nn.Linear(in_channels, hidden_channels)
            self.act = nn.GELU()
            self.fc_out = nn.Linear(hidden_channels, num_experts)
            self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.fc_out.weight, std=1e-2)
        nn.init.zeros_(self.fc_out.bias)

    def extra_repr(self) -> str:
        return (f'num_experts={self.num_experts}, mode={self.mode}, '
                f'temperature={self.temperature}, top_k={self.top_k}, '
                f'per_location={self.per_location}, balance={self.balance}')

    # ------------------------------------------------------------------ #
    def _check_inputs(self, visual: Tensor, sentence: Tensor) -> None:
        if visual.dim() != 4 or visual.shape[1] != self.in_channels:
            raise ValueError(
                f'visual must have shape (B, {self.in_channels}, h, w), '
                f'got {tuple(visual.shape)}')
        if sentence.dim() != 2 or sentence.shape[1] != self.text_channels:
            raise ValueError(
                f'sentence must have shape (B, {self.text_channels}), '
                f'got {tuple(sentence.shape)}')
        if sentence.shape[0] != visual.shape[0]:
            raise ValueError(
                f'sentence batch ({sentence.shape[0]}) must equal visual '
                f'batch ({visual.shape[0]})')

    def _logits(self, visual: Tensor, sentence: Tensor) -> Tensor:
        text = self.text_proj(self.text_norm(sentence))  # (B, hid)
        if self.per_location:
            vis = visual.permute(0, 2, 3, 1)  # (B, h, w, d)
            vis = self.visual_proj(self.visual_norm(vis))  # (B, h, w, hid)
            hidden = self.act(vis + text[:, None, None, :])
            return self.fc_out(hidden).permute(0, 3, 1, 2)  # (B, E, h, w)
        pooled = visual.mean(dim=(2, 3))  # (B, d)
        vis = self.visual_proj(self.visual_norm(pooled))
        return self.fc_out(self.act(vis + text))  # (B, E)

    def _apply_top_k(self, weights: Tensor) -> Tensor:
        """Keep the k largest weights along dim 1 and renormalise."""
        if self.top_k is None or self.top_k >= self.num_experts:
            return weights
        idx = weights.topk(self.top_k, dim=1).indices
        keep = torch.zeros_like(weights).scatter_(1, idx, 1.0)
        kept = weights * keep
        return kept / kept.sum(dim=1, keepdim=True)

    def forward(self, visual: Tensor, sentence: Tensor) -> Tensor:
        """Compute routing weights.

        Args:
            visual: visual grid, (B, d, h, w).
            sentence: sentence feature, (B, C_t).

        Returns:
            Tensor: weights summing to 1 over dim 1, (B, E) or, with
            ``per_location``, (B, E, h, w).
        """
        self._check_inputs(visual, sentence)
        b, _, h, w = visual.shape
        if self.mode == 'uniform':
            shape = (b, self.num_experts, h, w) if self.per_location else (
                b, self.num_experts)
            weights = visual.new_full(shape, 1.0 / self.num_experts)
        else:
            logits = self._logits(visual, sentence)
            weights = F.softmax(logits / self.temperature, dim=1)
            weights = self._apply_top_k(weights)
        self._live.value = weights
        if self.mode == 'uniform':
            per_sample = visual.new_full((b, self.num_experts),
                                         1.0 / self.num_experts)
        elif weights.dim() == 4:
            per_sample = weights.mean(dim=(2, 3))
        else:
            per_sample = weights
        self.last_weights = per_sample.detach()
        return weights

    def balance_loss(self) -> Tensor:
        """Load-balancing loss of the last forward (a differentiable scalar).

        Returns 0 (a tensor) in uniform mode or before any forward.
        """
        weights = self._live.value
        if self.mode == 'uniform' or weights is None:
            if weights is not None:
                return weights.new_zeros(())
            param = next(iter(self.parameters()), None)
            return torch.zeros(
                (), device=param.device if param is not None else None)
        e = self.num_experts
        # (B, E, h, w) -> (B*h*w, E); (B, E) stays.
        flat = weights.movedim(1, -1).reshape(-1, e)
        importance = flat.mean(dim=0)  # (E,), sums to 1
        if self.balance == 'cv':
            return e * importance.pow(2).sum() - 1.0
        dispatch = F.one_hot(flat.argmax(dim=1), e).to(flat.dtype).mean(0)
        return e * (dispatch * importance).sum() - 1.0
