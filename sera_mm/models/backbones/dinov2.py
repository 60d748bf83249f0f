"""DINOv2 ViT (with or without registers) with adapters between blocks."""
from typing import Optional, Sequence

import torch.nn as nn
from torch import Tensor

from sera_mm.models.utils.pet import PETRule
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import hub_kwargs, resolve_pretrained
from .base_adapter_backbone import BaseAdapterBackbone


def build_dinov2_model(pretrained: Optional[str],
                       config: Optional[dict],
                       revision: Optional[str] = None) -> nn.Module:
    """``Dinov2Model`` or ``Dinov2WithRegistersModel``.

    With ``pretrained`` the class follows the checkpoint's config
    (``model_type``); for random init a ``config`` with
    ``num_register_tokens > 0`` builds the registers variant. A ``.pth`` /
    ``.pt`` file is one of Meta's DINOv2 checkpoints (torch-hub layout, e.g.
    ``dinov2_vitb14_reg4_pretrain.pth`` as DETRIS uses): its architecture is
    read from its tensors and it is converted to the HF layout
    (:mod:`sera_mm.models.utils.meta_dinov2`).
    """
    import os.path as osp

    import transformers
    from transformers import AutoConfig, Dinov2Config, Dinov2Model
    path = resolve_pretrained(pretrained)
    with_reg = getattr(transformers, 'Dinov2WithRegistersModel', None)
    if path is not None and osp.isfile(path) and path.endswith(
            ('.pth', '.pt')):
        from sera_mm.models.utils.meta_dinov2 import (convert_meta_dinov2,
                                                      load_meta_dinov2,
                                                      meta_dinov2_config)
        state = load_meta_dinov2(path)
        cfg = meta_dinov2_config(state)
        model = build_dinov2_model(None, cfg)
        converted = convert_meta_dinov2(state, model.state_dict().keys())
        missing, unexpected = model.load_state_dict(converted, strict=False)
        if missing or unexpected:
            raise RuntimeError(f'converting {path}: missing keys {missing}, '
                               f'unexpected keys {unexpected}')
        return model
    if path is None:
        cfg = dict(config or {})
        if cfg.get('num_register_tokens', 0) > 0:
            if with_reg is None:
                raise ValueError('num_register_tokens > 0 needs a '
                                 'transformers version with '
                                 'Dinov2WithRegistersModel')
            return with_reg(transformers.Dinov2WithRegistersConfig(**cfg))
        cfg.pop('num_register_tokens', None)
        return Dinov2Model(Dinov2Config(**cfg))
    hub = hub_kwargs(revision)
    model_type = AutoConfig.from_pretrained(path, **hub).model_type
    if model_type == 'dinov2_with_registers':
        if with_reg is None:
            raise ValueError(f'{pretrained!r} is DINOv2 with registers, '
                             f'which this transformers version lacks')
        return with_reg.from_pretrained(path, **hub)
    if model_type != 'dinov2':
        raise ValueError(f'{pretrained!r} has model_type {model_type!r}, '
                         f"expected 'dinov2' or 'dinov2_with_registers'")
    return Dinov2Model.from_pretrained(path, **hub)


@MODELS.register_module()
class DINOv2Backbone(BaseAdapterBackbone):
    """DINOv2 run block by block, returning patch grids.

    Token layout: [CLS, registers..., patches]; ``num_prefix`` =
    1 + ``num_register_tokens`` (0 registers for plain DINOv2). The
    embeddings interpolate the position embeddings to the input size.
    The grid of the LAST block (index ``num_blocks - 1``), when requested,
    goes through the final ``layernorm`` (as HF's ``last_hidden_state``);
    grids of the other blocks are raw block outputs. Adapters see raw
    block outputs. Input normalisation (ImageNet mean/std) belongs to the
    data preprocessor; sizes not divisible by the patch (14) raise
    ValueError.

    Args:
        pretrained: HF hub id / folder of a DINOv2 model, or None for random
            init from ``config`` (``Dinov2Config`` kwargs; add
            ``num_register_tokens`` > 0 for the registers variant).
        out_indices: 0-based block indices to return.
        adapter, adapter_indices, text_channels, trainable: as
            :class:`CLIPVisionBackbone`.
        final_norm: apply the final layernorm to the last block's grid.
        frozen_stages: freeze the embeddings and blocks
            ``[0, frozen_stages)`` completely (PET rule overridden), as
            mmseg's ``frozen_stages``; with no adapter among them the
            backward pass stops at block ``frozen_stages``. -1: nothing.
        with_cp: activation checkpointing of the blocks in training
            (recompute instead of storing activations: less memory for
            large batches, about one more block forward in time).
        revision: HF hub revision of a hub id ``pretrained`` (see
            :class:`CLIPVisionBackbone`).
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 config: Optional[dict] = None,
                 out_indices: Sequence[int] = (3, 7, 11),
                 adapter: Optional[dict] = None,
                 adapter_indices: Sequence[int] = (1, 3, 5, 7, 9, 11),
                 text_channels: Optional[int] = None,
                 trainable: PETRule = 'norm_bias',
                 final_norm: bool = True,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 revision: Optional[str] = None) -> None:
        super().__init__()
        self.encoder = build_dinov2_model(pretrained, config, revision)
        cfg = self.encoder.config
        self.patch_size = cfg.patch_size
        self.embed_dim = cfg.hidden_size
        self.num_register_tokens = getattr(cfg, 'num_register_tokens', 0)
        self.num_prefix = 1 + self.num_register_tokens
        self.final_norm = final_norm
        num_blocks = len(self.encoder.encoder.layer)
        self._setup_adapters([cfg.hidden_size] * num_blocks, out_indices,
                             adapter, adapter_indices, text_channels,
                             trainable)
        last = self.out_indices[-1]
        # the final layernorm feeds an output only when it is applied to
        # the last block and that block is returned
        norm_used = final_norm and last == num_blocks - 1
        self._freeze_unused(
            ([] if norm_used else [self.encoder.layernorm]) +
            list(self.encoder.encoder.layer[last + 1:]))
        self._freeze_stages([self.encoder.embeddings],
                            self.encoder.encoder.layer, frozen_stages)
        self.with_cp = with_cp

    def encoder_blocks(self) -> Sequence[nn.Module]:
        return self.encoder.encoder.layer

    def stem(self, img: Tensor) -> Tensor:
        """Patch + position embeddings with the class and register
        tokens: (B, num_prefix + h*w, C)."""
        return self.encoder.embeddings(img)

    def block_output(self, idx: int, x: Tensor) -> Tensor:
        """The final layernorm on the last block's output when
        ``final_norm``."""
        if idx == self.num_blocks - 1 and self.final_norm:
            return self.encoder.layernorm(x)
        return x
