"""Expression-aware expert router.

The router turns a referring expression (its sentence feature) and the visual
grid it is applied to into mixing weights over E experts. One router sits in
every SERA-Adapter and one per level of the SERA-Fusion neck.
"""
import math
from contextvars import ContextVar
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.registry import MODELS

_MODES = ('learned', 'uniform')
_BALANCE = ('cv', 'cv_probs', 'switch')
_CONDITIONS = ('text_visual', 'visual', 'text')
_NOISE = (None, 'fixed', 'learned')
_GATES = ('auto', 'prob', 'renorm')
#: Names of the auxiliary losses (:meth:`ExpertRouter.aux_losses`).
AUX_LOSS_KEYS = ('balance', 'z', 'z_lse', 'assign')


class _Live:
    """Holds tensors of the last forward (with their autograd graph) for
    the auxiliary losses. Copies and pickles come back empty, so a router
    can be deep-copied (EMA, model copies) after a forward, which a
    non-leaf tensor attribute would forbid."""

    def __init__(self) -> None:
        self.logits: Optional[Tensor] = None
        self.probs: Optional[Tensor] = None
        self.mask: Optional[Tensor] = None

    def clear(self) -> None:
        self.logits = self.probs = self.mask = None

    def __deepcopy__(self, memo: dict) -> '_Live':
        return _Live()

    def __getstate__(self) -> dict:
        return {'logits': None, 'probs': None, 'mask': None}


class RoutingOutput(NamedTuple):
    """What one router computed in one forward (float32 tensors, with their
    autograd graph): the auxiliary losses and the routing metainfo of that
    forward are computed from it.

    Attributes:
        router: the router that produced it.
        logits: noise-free routing logits (B, E) or (B, E, h, w); None in
            uniform mode.
        probs: softmax probabilities (pre-top-k), same shape.
        gates: the weights the experts were mixed with (post-top-k).
        mask: the top-k selection (1 = kept), or None without top-k.
    """
    router: 'ExpertRouter'
    logits: Optional[Tensor]
    probs: Tensor
    gates: Tensor
    mask: Optional[Tensor]


_RECORDERS: ContextVar[Tuple['RoutingRecorder', ...]] = ContextVar(
    'sera_mm_routing_recorders', default=())


class RoutingRecorder:
    """Collects the :class:`RoutingOutput` of every router that runs inside
    the ``with`` block (only the innermost active recorder receives them)::

        with RoutingRecorder() as rec:
            feats = model.extract_feat(inputs, samples)
        losses = [o.router.aux_losses(('balance', ), o) for o in rec.outputs]

    A model computes its routing losses and metainfo from what its own
    forward returned this way, never from module state that another forward
    (an EMA teacher, test-time augmentation, a recomputation) may have
    overwritten in between.
    """

    def __init__(self) -> None:
        self.outputs: List[RoutingOutput] = []
        self._token = None

    def __enter__(self) -> 'RoutingRecorder':
        self._token = _RECORDERS.set(_RECORDERS.get() + (self, ))
        return self

    def __exit__(self, *exc) -> None:
        _RECORDERS.reset(self._token)


_RECOMPUTING: ContextVar[bool] = ContextVar('sera_mm_routing_recomputing',
                                            default=False)


class recomputation:  # noqa: N801 (used like a function: with recomputation())
    """Context of a forward that activation checkpointing runs again in the
    backward pass (``torch.utils.checkpoint``'s ``context_fn`` recompute
    context): routers inside it leave recorders and their state alone."""

    def __enter__(self) -> 'recomputation':
        self._token = _RECOMPUTING.set(True)
        return self

    def __exit__(self, *exc) -> None:
        _RECOMPUTING.reset(self._token)


def _record(output: RoutingOutput) -> None:
    stack = _RECORDERS.get()
    if stack:
        stack[-1].outputs.append(output)


def _flat(t: Tensor) -> Tensor:
    """(B, E) or (B, E, h, w) -> (N, E) with N = B or B*h*w."""
    return t.movedim(1, -1).reshape(-1, t.shape[1])


@MODELS.register_module()
class ExpertRouter(nn.Module):
    """Softmax router over E experts, conditioned on text and/or vision.

    Global routing (default) computes one weight vector per sample::

        hidden = act(A([LN(sentence) ; LN(avgpool(visual))]))    # (B, hid)
        logits = W_out hidden                                    # (B, E)
        logits += noise                      # training, ``noise`` only
        probs = softmax(logits / temperature)                    # (B, E)
        weights = gates(probs, top_k)                            # (B, E)

    ``condition`` selects the router's input: ``'text_visual'`` (SERA-MM's
    expression-aware router: the first layer is the sum of a sentence
    projection and a visual projection, the same linear map as one layer on
    the concatenation), ``'visual'`` (the SERA paper's formula
    ``r = W2 act(W1 GAP(X))``) or ``'text'`` (the sentence only). With
    ``per_location=True`` the visual projection is applied at every grid
    location (a 1x1 conv), the sentence projection is broadcast, and the
    logits are (B, E, h, w) with a softmax over E at each location.

    Top-k gates (``top_k``): the k largest noisy logits are kept, the others
    get weight exactly 0. The kept weights carry gradient to the router for
    every k: ``gate='prob'`` uses the softmax probabilities of the kept
    experts unchanged (Switch Transformer; for k=1 the weight is the chosen
    expert's probability), ``gate='renorm'`` renormalises them to sum to 1
    (equal to a softmax over the kept logits; with k=1 this is a constant 1
    and gives the router no gradient, so it is refused). ``'auto'``
    (default) is 'prob' for k=1 and 'renorm' for k>=2. With global routing
    the owner runs every expert only on the samples routed to it
    (:func:`~sera_mm.models.routers.mixture.mix_experts`).

    Noisy gating (training only; evaluation is deterministic):
    ``noise='fixed'`` adds N(0, noise_std^2) to the logits; ``'learned'``
    adds N(0, 1) * softplus(W_noise hidden) * noise_std, the noisy top-k
    gating of Shazeer et al. (2017); the noise projection starts at zero
    (std softplus(0) * noise_std = 0.69 * noise_std).

    ``mode='uniform'`` is the no-routing ablation: every weight is exactly
    1/E and the router owns no parameters.

    The last layer is initialised with a normal weight of std ``init_std``
    (default 1e-2) and a zero bias, so the initial weights are close to
    uniform while gradients reach every layer from the first step.

    Auxiliary losses, each computed from the last forward (0 in uniform
    mode), with ``p`` the pre-top-k probabilities (N, E), N samples or
    locations, importance ``P_e = mean_n p_ne`` and dispatch share ``f_e``
    (share of the N rows that selected expert e, divided by k):

    - :meth:`balance_loss` ``'cv'``: the paper's ``CV(usage)^2``, the
      squared coefficient of variation (population variance) of the
      expert usage *as dispatched*, ``E * sum_e U_e^2 - 1`` with ``U_e``
      the share of rows that selected expert e (divided by k): 0 for
      uniform usage, E - 1 for one expert taking all; a top-2 router that
      dispatches everything to the same 2 of 4 experts scores 1. The
      dispatch has no gradient (and renormalised top-k gates none towards
      unselected experts), so the gradient flows straight through the
      importance ``P_e`` (``U + P - stopgrad(P)``). Without top-k
      ``U = P`` and this equals ``'cv_probs'``;
      ``'cv_probs'``: the same on the pre-top-k importance ``P_e`` (blind to
      a top-k dispatch that collapses while the probabilities stay
      spread: 0.04 in the example above);
      ``'switch'``: ``E * sum_e f_e * P_e - 1`` (Switch Transformer); the
      gradient flows through ``P_e``.
    - :meth:`z_loss` ``kind='mean_square'``: the paper's z-loss
      ``||r||^2 / (B * E)``, the mean squared (noise-free) logit;
      ``kind='lse'``: ST-MoE's ``mean_n logsumexp(r_n)^2``.
    - :meth:`assign_loss`: the token-assignment regulariser, which the
      paper does not specify; SERA-MM's choice is the mean per-row entropy
      of ``p`` divided by ``log E`` (in [0, 1]): lowering it makes every
      sample (or location) commit to few experts, while ``balance_loss``
      keeps the batch as a whole using all of them.

    Args:
        in_channels: channels d of the visual grid.
        text_channels: channels C_t of the sentence feature.
        num_experts: number of experts E (>= 1).
        hidden_channels: hidden width of the routing MLP.
        temperature: softmax temperature (> 0); lower is sharper. Stored
            as a buffer, so a temperature annealed during training (by
            :class:`~sera_mm.engine.hooks.RouterTemperatureHook`) is saved
            with the checkpoint.
        top_k: keep only the k largest weights (1 <= k <= E), or None.
        per_location: route every grid location separately.
        mode: 'learned' or 'uniform'.
        balance: 'cv', 'cv_probs' or 'switch' (see above).
        condition: 'text_visual', 'visual' or 'text'.
        noise: None, 'fixed' or 'learned' (training only).
        noise_std: scale of the noise.
        gate: 'auto', 'prob' or 'renorm' (top-k gates, see above).
        init_std: std of the last layer's initial weight.

    Attributes:
        expert_names: names of the experts, in order (set by the owner;
            defaults to 'expert0', 'expert1', ...).
        last_weights: detached routing distribution of the last forward:
            the pre-top-k probabilities per sample, (B, E), averaged over
            locations for per-location routing (rows sum to 1); None before
            any forward. Statistics and pictures read it.
        last_gates: detached weights the experts were mixed with, (B, E)
            (equal to ``last_weights`` without top-k).
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
                 balance: str = 'cv',
                 condition: str = 'text_visual',
                 noise: Optional[str] = None,
                 noise_std: float = 1.0,
                 gate: str = 'auto',
                 init_std: float = 1e-2) -> None:
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
        if condition not in _CONDITIONS:
            raise ValueError(f'condition must be one of {_CONDITIONS}, got '
                             f'{condition!r}')
        if noise not in _NOISE:
            raise ValueError(f'noise must be one of {_NOISE}, got {noise!r}')
        if not noise_std >= 0:
            raise ValueError(f'noise_std must be >= 0, got {noise_std}')
        if gate not in _GATES:
            raise ValueError(f'gate must be one of {_GATES}, got {gate!r}')
        if gate == 'renorm' and top_k == 1 and num_experts > 1:
            raise ValueError(
                "gate='renorm' with top_k=1 makes every kept weight exactly "
                "1, so the router gets no gradient; use gate='prob' (or "
                "'auto')")
        if condition == 'text' and per_location:
            raise ValueError("per_location routing needs the visual input; "
                             "condition='text' gives one weight per sample")
        self.in_channels = in_channels
        self.text_channels = text_channels
        self.num_experts = num_experts
        self.hidden_channels = hidden_channels
        self.top_k = top_k
        self.per_location = per_location
        self.mode = mode
        self.balance = balance
        self.condition = condition
        self.noise = noise
        self.noise_std = float(noise_std)
        self.gate = gate
        self.register_buffer('_temperature',
                             torch.tensor(float(temperature)))
        self.expert_names: List[str] = [
            f'expert{i}' for i in range(num_experts)
        ]
        self.last_weights: Optional[Tensor] = None
        self.last_gates: Optional[Tensor] = None
        self._live = _Live()

        if mode == 'learned':
            # creation order (norms, then projections) fixes the random
            # initialisation for a seed; keep it
            if condition != 'visual':
                self.text_norm = nn.LayerNorm(text_channels)
            if condition != 'text':
                self.visual_norm = nn.LayerNorm(in_channels)
            if condition != 'visual':
                self.text_proj = nn.Linear(text_channels, hidden_channels)
            if condition != 'text':
                self.visual_proj = nn.Linear(in_channels, hidden_channels)
            self.act = nn.GELU()
            self.fc_out = nn.Linear(hidden_channels, num_experts)
            nn.init.normal_(self.fc_out.weight, std=init_std)
            nn.init.zeros_(self.fc_out.bias)
            if noise == 'learned':
                self.noise_proj = nn.Linear(hidden_channels, num_experts)
                nn.init.zeros_(self.noise_proj.weight)
                nn.init.zeros_(self.noise_proj.bias)

    # ------------------------------------------------------------------ #
    @property
    def temperature(self) -> float:
        """Softmax temperature (a float; stored in a buffer)."""
        return float(self._temperature)

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f'temperature must be > 0, got {value}')
        self._temperature.fill_(float(value))

    @property
    def gate_mode(self) -> str:
        """The effective top-k gate ('prob' or 'renorm')."""
        if self.gate != 'auto':
            return self.gate
        return 'prob' if self.top_k == 1 else 'renorm'

    def extra_repr(self) -> str:
        return (f'num_experts={self.num_experts}, mode={self.mode}, '
                f'condition={self.condition}, '
                f'temperature={self.temperature:g}, top_k={self.top_k}, '
                f'gate={self.gate_mode}, noise={self.noise}, '
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

    def _hidden(self, visual: Tensor, sentence: Tensor) -> Tensor:
        """Hidden routing features, (B, hid) or (B, h, w, hid)."""
        parts = []
        if self.condition != 'visual':
            text = self.text_proj(self.text_norm(sentence))  # (B, hid)
            parts.append(text[:, None, None, :] if self.per_location else
                         text)
        if self.condition != 'text':
            if self.per_location:
                vis = visual.permute(0, 2, 3, 1)  # (B, h, w, d)
            else:
                vis = visual.mean(dim=(2, 3))  # (B, d)
            parts.append(self.visual_proj(self.visual_norm(vis)))
        hidden = parts[0] if len(parts) == 1 else parts[1] + parts[0]
        return self.act(hidden)

    def _gates(self, probs: Tensor, noisy_logits: Tensor) -> Tensor:
        """Top-k gates from probabilities (selection by noisy logits)."""
        idx = noisy_logits.topk(self.top_k, dim=1).indices
        mask = torch.zeros_like(probs).scatter_(1, idx, 1.0)
        self._live.mask = mask
        kept = probs * mask
        if self.gate_mode == 'prob':
            return kept
        return kept / kept.sum(dim=1, keepdim=True)

    def forward(self, visual: Tensor, sentence: Tensor) -> Tensor:
        """Routing weights (see :meth:`_route`). Inside
        :func:`recomputation` (a checkpointed forward run again in the
        backward pass) the same tensors are computed, but nothing is
        recorded and ``last_weights``, ``last_gates`` and the live tensors
        of the auxiliary losses keep what the original forward set."""
        if not _RECOMPUTING.get():
            return self._route(visual, sentence)
        kept = (self._live, self.last_weights, self.last_gates)
        self._live = _Live()
        token = _RECORDERS.set(())
        try:
            return self._route(visual, sentence)
        finally:
            _RECORDERS.reset(token)
            self._live, self.last_weights, self.last_gates = kept

    def _route(self, visual: Tensor, sentence: Tensor) -> Tensor:
        """Compute routing weights.

        Args:
            visual: visual grid, (B, d, h, w).
            sentence: sentence feature, (B, C_t).

        Returns:
            Tensor: weights (B, E) or, with ``per_location``, (B, E, h, w).
            Without top-k (and with ``gate='renorm'``) they sum to 1 over
            dim 1; with ``gate='prob'`` the kept weights are the
            probabilities of the kept experts.
        """
        self._check_inputs(visual, sentence)
        b, _, h, w = visual.shape
        e = self.num_experts
        self._live.clear()
        if self.mode == 'uniform':
            shape = (b, e, h, w) if self.per_location else (b, e)
            weights = visual.new_full(shape, 1.0 / e)
            self.last_weights = visual.new_full((b, e), 1.0 / e)
            self.last_gates = self.last_weights
            _record(RoutingOutput(self, None, weights.float(),
                                  weights.float(), None))
            return weights
        hidden = self._hidden(visual, sentence)
        logits = self.fc_out(hidden)  # (B, E) | (B, h, w, E)
        noisy = logits
        if self.training and self.noise is not None and self.noise_std > 0:
            std = self.noise_std
            if self.noise == 'learned':
                std = F.softplus(self.noise_proj(hidden)) * std
            noisy = logits + torch.randn_like(logits) * std
        if self.per_location:
            logits = logits.permute(0, 3, 1, 2)  # (B, E, h, w)
            noisy = noisy.permute(0, 3, 1, 2)
        # routing in float32 (autocast-safe softmax and losses)
        logits32, noisy32 = logits.float(), noisy.float()
        probs = F.softmax(noisy32 / self._temperature, dim=1)
        self._live.logits = logits32
        self._live.probs = probs
        weights = probs
        if self.top_k is not None and self.top_k < e:
            weights = self._gates(probs, noisy32)
        _record(RoutingOutput(self, logits32, probs, weights,
                              self._live.mask))
        weights = weights.to(visual.dtype)
        per_location = weights.dim() == 4
        self.last_weights = (probs.mean(dim=(2, 3)) if per_location else
                             probs).detach()
        self.last_gates = (weights.mean(dim=(2, 3)) if per_location else
                           weights).detach()
        return weights

    # ------------------------------------------------------------ losses
    def _zero(self) -> Tensor:
        ref = self._temperature
        return ref.new_zeros(())

    def balance_loss(self, output: Optional[RoutingOutput] = None) -> Tensor:
        """Load-balancing loss of ``output`` (default: this router's last
        forward), a differentiable scalar.

        Returns 0 (a tensor) in uniform mode or before any forward.
        """
        state = self._live if output is None else output
        if self.mode == 'uniform':
            return self._zero()
        probs = state.probs
        if probs is None:
            return self._zero()
        e = self.num_experts
        flat = _flat(probs)
        importance = flat.mean(dim=0)  # (E,), sums to 1
        if self.balance == 'cv_probs':
            return e * importance.pow(2).sum() - 1.0
        if self.balance == 'cv':
            # value: CV^2 of the usage as dispatched (the share of rows
            # each expert was selected for, from the top-k mask); gradient:
            # straight through the importance, because the dispatch itself
            # has none towards experts that were not selected (renormalised
            # top-k gates give a collapsed router a zero gradient)
            if state.mask is not None:
                dispatch = _flat(state.mask).mean(0) / float(self.top_k)
                usage = dispatch.detach() + importance - importance.detach()
            else:
                usage = importance
            return e * usage.pow(2).sum() - 1.0
        if state.mask is not None:
            chosen = _flat(state.mask)
            dispatch = chosen.mean(0) / float(self.top_k)
        else:
            dispatch = F.one_hot(flat.argmax(dim=1), e).to(
                flat.dtype).mean(0)
        return e * (dispatch.detach() * importance).sum() - 1.0

    def z_loss(self, kind: str = 'mean_square',
               output: Optional[RoutingOutput] = None) -> Tensor:
        """Router z-loss of the last forward's noise-free logits.

        Args:
            kind: 'mean_square' (the paper: mean squared logit over B*E
                entries, or B*E*h*w for per-location routing) or 'lse'
                (ST-MoE: mean over rows of logsumexp(logits)^2).
        """
        logits = (self._live if output is None else output).logits
        if logits is None:
            return self._zero()
        if kind == 'mean_square':
            return logits.pow(2).mean()
        if kind == 'lse':
            return torch.logsumexp(_flat(logits), dim=1).pow(2).mean()
        raise ValueError(
            f"kind must be 'mean_square' or 'lse', got {kind!r}")

    def assign_loss(self, output: Optional[RoutingOutput] = None) -> Tensor:
        """Mean per-row routing entropy / log(E) of ``output`` (default: the
        last forward); the token-assignment regulariser, 0 for E = 1."""
        probs = (self._live if output is None else output).probs
        if probs is None or self.num_experts < 2 or self.mode == 'uniform':
            return self._zero()
        flat = _flat(probs)
        entropy = -(flat * torch.log(flat.clamp_min(1e-12))).sum(1)
        return entropy.mean() / math.log(self.num_experts)

    def aux_losses(self, keys: Sequence[str] = AUX_LOSS_KEYS,
                   output: Optional[RoutingOutput] = None
                   ) -> Dict[str, Tensor]:
        """Auxiliary losses of ``output`` (a :class:`RoutingOutput` of this
        router; default: its last forward), unweighted, for ``keys``
        (default all): ``balance``, ``z`` (paper), ``z_lse`` (ST-MoE),
        ``assign``. Only the requested ones are computed."""
        compute = dict(balance=lambda: self.balance_loss(output),
                       z=lambda: self.z_loss('mean_square', output),
                       z_lse=lambda: self.z_loss('lse', output),
                       assign=lambda: self.assign_loss(output))
        unknown = [k for k in keys if k not in compute]
        if unknown:
            raise ValueError(f'unknown auxiliary losses {unknown}; expected '
                             f'some of {AUX_LOSS_KEYS}')
        return {k: compute[k]() for k in keys}
