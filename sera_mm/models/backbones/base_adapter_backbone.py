"""Shared logic of the backbone wrappers: adapters after selected blocks,
parameter-efficient tuning of the wrapped encoder and frozen BatchNorm."""
import copy
import inspect
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from sera_mm.models.layers import maybe_checkpoint
from sera_mm.structures import TextFeatures
from sera_mm.models.utils.pet import PETRule, apply_pet, freeze_bn_stats
from sera_mm.registry import MODELS


def _check_indices(name: str, indices: Sequence[int],
                   num_blocks: int) -> List[int]:
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < num_blocks]
    if bad:
        raise ValueError(f'{name} must be 0-based block indices in '
                         f'[0, {num_blocks - 1}], got {bad}')
    if len(set(indices)) != len(indices):
        raise ValueError(f'{name} has duplicates: {indices}')
    return indices


_BLOCK_EXTRA_ARGS: Dict[type, int] = {}


def block_mask_args(block: nn.Module) -> Tuple[None, ...]:
    """The ``None`` masks a transformers encoder block needs after its
    hidden states: one per required positional parameter of its
    ``forward``, read from the signature (cached per class).

    transformers 5 blocks take ``(hidden_states, attention_mask, **kwargs)``
    while 4.x ``CLIPEncoderLayer`` also requires ``causal_attention_mask``
    positionally and 4.x ``Dinov2Layer`` none; passing exactly the required
    ones works with both.
    """
    cls = type(block)
    if cls not in _BLOCK_EXTRA_ARGS:
        params = list(inspect.signature(block.forward).parameters.values())
        required = [
            p for p in params[1:]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default is p.empty
        ]
        _BLOCK_EXTRA_ARGS[cls] = len(required)
    return (None, ) * _BLOCK_EXTRA_ARGS[cls]


def load_matching_state_dict(model: nn.Module, state_dict: Dict[str, Tensor],
                             source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly, allowing only the
    non-persistent ``position_ids`` buffers to be absent."""
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.endswith('position_ids')]
    if missing or unexpected:
        raise RuntimeError(f'loading {source}: missing keys {missing}, '
                           f'unexpected keys {unexpected}')


class BaseAdapterBackbone(nn.Module):
    """A pretrained encoder run block by block with adapters in between.

    Subclasses build ``self.encoder`` (the pretrained network), call
    :meth:`_setup_adapters` with the width of every block's output, and
    describe the encoder to the one block loop, :meth:`forward`:

    * :meth:`encoder_blocks` -- the blocks, in order;
    * :meth:`stem` -- image -> the first block's input (patch embedding);
    * ``token_layout`` -- ``'tokens'`` (blocks map (B, N, C) token
      sequences with ``num_prefix`` prefix tokens before the
      ``H / patch_size`` x ``W / patch_size`` patch tokens) or ``'grid'``
      (blocks map (B, C, h, w) maps; adapters get them flattened);
    * :meth:`block_output` -- optional, what a returned block's output
      becomes before it is a grid (e.g. a final norm).

    A subclass may set ``prefix_cache`` (a
    :class:`~sera_mm.models.backbones.prefix_cache.FrozenPrefixCache`): the
    stem and the ``frozen_stages`` first blocks then run once per image.

    The encoder is tuned by the PET rule ``trainable``; adapters are fully
    trainable. ``train()`` keeps the encoder's BatchNorm layers in eval mode
    when ``frozen_bn`` (their statistics stay as pretrained).

    Attributes:
        out_indices: 0-based block indices whose outputs are returned.
        adapter_indices: blocks followed by an adapter.
        adapters: ``nn.ModuleDict`` keyed ``str(block index)``.
        out_channels: channels of every returned grid.
    """

    frozen_bn: bool = False
    with_cp: bool = False
    token_layout: str = 'tokens'
    patch_size: int = 1
    num_prefix: int = 0
    prefix_cache = None

    def encoder_blocks(self) -> Sequence[nn.Module]:
        """The encoder's blocks, in the order they run."""
        raise NotImplementedError

    def stem(self, img: Tensor) -> Tensor:
        """(B, 3, H, W) image -> the first block's input."""
        raise NotImplementedError

    def block_output(self, idx: int, x: Tensor) -> Tensor:
        """Block ``idx``'s output (after its adapter) as it is returned;
        identity unless a subclass adds e.g. a final norm."""
        return x

    def forward(self, img: Tensor,
                text: Optional[TextFeatures] = None) -> List[Tensor]:
        """Args:
            img: (B, 3, H, W) normalised image.
            text: text features for the adapters.

        Returns:
            grids (B, C_i, h_i, w_i), one per ``out_indices`` (the patch
            grid H / patch_size x W / patch_size for token layouts).
        """
        self._check_image(img, self.patch_size)
        hw = (img.shape[2] // self.patch_size,
              img.shape[3] // self.patch_size)
        blocks = self.encoder_blocks()
        start = 0
        if self.prefix_cache is not None:
            start = self.frozen_stages
            x = self.prefix_cache(
                img, lambda t: self._run_prefix(t, blocks[:start]))
        else:
            x = self.stem(img)
        outs = []
        if start and start - 1 in self.out_indices:
            outs.append(self._to_output(start - 1, x, hw))
        # blocks after the last returned one feed no output
        for i in range(start, self.out_indices[-1] + 1):
            x = self._run_block(blocks[i], x)
            x = self._adapt_layout(i, x, hw, text)
            if i in self.out_indices:
                outs.append(self._to_output(i, x, hw))
        return outs

    def _run_prefix(self, img: Tensor, blocks: Sequence[nn.Module]) -> Tensor:
        x = self.stem(img)
        for block in blocks:
            x = self._run_block(block, x)
        return x

    def _adapt_layout(self, idx: int, x: Tensor, hw,
                      text: Optional[TextFeatures]) -> Tensor:
        if self.token_layout == 'tokens':
            return self._adapt(idx, x, hw, self.num_prefix, text)
        if str(idx) not in self.adapters:
            return x
        b, c, h, w = x.shape
        tokens = self._adapt(idx, x.flatten(2).transpose(1, 2), (h, w), 0,
                             text)
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def _to_output(self, idx: int, x: Tensor, hw) -> Tensor:
        x = self.block_output(idx, x)
        if self.token_layout == 'tokens':
            return self.tokens_to_grid(x, hw, self.num_prefix)
        return x

    def _setup_adapters(self, block_channels: Sequence[int],
                        out_indices: Sequence[int], adapter: Optional[dict],
                        adapter_indices: Sequence[int],
                        text_channels: Optional[int],
                        trainable: PETRule) -> None:
        num_blocks = len(block_channels)
        self.num_blocks = num_blocks
        self.block_channels = list(block_channels)
        self.out_indices = sorted(
            _check_indices('out_indices', out_indices, num_blocks))
        if not self.out_indices:
            raise ValueError('out_indices is empty')
        self.out_channels = [block_channels[i] for i in self.out_indices]
        self.trainable = trainable
        apply_pet(self.encoder, trainable)
        self.adapters = nn.ModuleDict()
        if adapter is None:
            self.adapter_indices = []
            return
        self.adapter_indices = sorted(
            _check_indices('adapter_indices', adapter_indices, num_blocks))
        late = [i for i in self.adapter_indices if i > self.out_indices[-1]]
        if late:
            raise ValueError(f'adapter_indices {late} come after the last '
                             f'out index {self.out_indices[-1]} and would '
                             f'never affect the outputs')
        if text_channels is None:
            raise ValueError('text_channels is required when adapters are '
                             'used (the text encoder\'s embed_dim)')
        for idx in self.adapter_indices:
            cfg = copy.deepcopy(dict(adapter))
            cfg.update(in_channels=block_channels[idx],
                       text_channels=text_channels)
            self.adapters[str(idx)] = MODELS.build(cfg)

    @staticmethod
    def _freeze_unused(modules: Sequence[Optional[nn.Module]]) -> None:
        """Freeze encoder parts that feed no output (blocks after the last
        out index, unused final norms): a PET rule would otherwise leave
        their norm/bias terms trainable without gradients (DDP then reports
        unused parameters, and PET checkpoints would carry them)."""
        for module in modules:
            if module is not None:
                module.requires_grad_(False)

    def _freeze_stages(self, stem: Sequence[nn.Module],
                       blocks: Sequence[nn.Module],
                       frozen_stages: int) -> None:
        """Freeze ``stem`` (patch/position embeddings) and
        ``blocks[:frozen_stages]`` completely, overriding the PET rule, as
        mmseg's ``frozen_stages`` (0: the stem only; -1: nothing). With no
        trainable parameter below a block, autograd records nothing up to
        it, so the backward pass stops there."""
        if not -1 <= frozen_stages <= len(blocks):
            raise ValueError(f'frozen_stages must be in [-1, {len(blocks)}]'
                             f', got {frozen_stages}')
        self.frozen_stages = frozen_stages
        if frozen_stages < 0:
            return
        for module in list(stem) + list(blocks[:frozen_stages]):
            if module is not None:
                module.requires_grad_(False)

    def _run_block(self, block: nn.Module, tokens: Tensor) -> Tensor:
        """Run one block (transformers' blocks get the ``None`` masks they
        require, :func:`block_mask_args`); with ``with_cp`` and gradients on,
        its activations are recomputed in the backward pass instead of
        stored (activation checkpointing: less memory, about one more
        forward of the block in time)."""
        out = maybe_checkpoint(self.with_cp and self.training, block,
                               tokens, *block_mask_args(block),
                               params=block.parameters())
        return out[0] if isinstance(out, (tuple, list)) else out

    def _adapt(self, idx: int, tokens: Tensor, hw, num_prefix: int,
               text: Optional[TextFeatures]) -> Tensor:
        """Run the adapter after block ``idx`` (if any) on (B, N, C)."""
        key = str(idx)
        if key not in self.adapters:
            return tokens
        if text is None:
            raise ValueError(f'adapter after block {idx} needs text features'
                             f', got text=None')
        return self.adapters[key](tokens, hw, num_prefix, text)

    @staticmethod
    def _check_image(img: Tensor, patch: int = 1) -> None:
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f'img must have shape (B, 3, H, W), got '
                             f'{tuple(img.shape)}')
        h, w = img.shape[-2:]
        if patch > 1 and (h % patch or w % patch):
            raise ValueError(
                f'input size {h}x{w} is not divisible by the patch size '
                f'{patch}; letterbox/pad the image to a multiple of {patch}')

    @staticmethod
    def tokens_to_grid(tokens: Tensor, hw, num_prefix: int) -> Tensor:
        """(B, num_prefix + h*w, C) -> patch grid (B, C, h, w)."""
        h, w = hw
        patches = tokens[:, num_prefix:]
        if patches.shape[1] != h * w:
            raise ValueError(f'expected {h}*{w}={h * w} patch tokens after '
                             f'{num_prefix} prefix tokens, got '
                             f'{patches.shape[1]}')
        return patches.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)

    def train(self, mode: bool = True) -> 'BaseAdapterBackbone':
        super().train(mode)
        if mode and self.frozen_bn:
            freeze_bn_stats(self.encoder)
        return self

    def init_weights(self) -> None:
        """Initialise the adapters only; the encoder holds pretrained
        weights loaded in the constructor and is never re-initialised."""
        for adapter in self.adapters.values():
            if hasattr(adapter, 'init_weights'):
                adapter.init_weights()
