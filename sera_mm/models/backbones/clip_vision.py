"""CLIP ViT image tower with adapters between its blocks."""
import os.path as osp
from typing import Optional, Sequence

import torch.nn as nn
from torch import Tensor

from sera_mm.models.layers import use_lean_quick_gelu
from sera_mm.models.utils.openai_clip import convert_openai_clip
from sera_mm.models.utils.pet import PETRule
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import hub_kwargs, resolve_pretrained
from .base_adapter_backbone import (BaseAdapterBackbone,
                                    load_matching_state_dict)


def build_clip_vision_model(pretrained: Optional[str],
                            config: Optional[dict],
                            revision: Optional[str] = None) -> nn.Module:
    """``CLIPVisionModel`` from a hub id/folder (a full CLIP works too), an
    OpenAI ``.pt`` checkpoint, or random init from ``config`` kwargs."""
    from transformers import CLIPVisionConfig, CLIPVisionModel
    path = resolve_pretrained(pretrained)
    if path is None:
        return CLIPVisionModel(CLIPVisionConfig(**(config or {})))
    if osp.isfile(path) and path.endswith(('.pt', '.pth')):
        clip_cfg, state_dict = convert_openai_clip(path)
        model = CLIPVisionModel(clip_cfg.vision_config)
        keep_prefix = any(
            k.startswith('vision_model.') for k in model.state_dict())
        vision = {(k if keep_prefix else k[len('vision_model.'):]): v
                  for k, v in state_dict.items()
                  if k.startswith('vision_model.')}
        load_matching_state_dict(model, vision, path)
        return model
    return CLIPVisionModel.from_pretrained(path, **hub_kwargs(revision))


@MODELS.register_module()
class CLIPVisionBackbone(BaseAdapterBackbone):
    """CLIP ViT run block by block, returning patch grids.

    Data flow for img (B, 3, H, W), H and W multiples of the patch size::

        tokens = pre_layrnorm(embeddings(img))   # (B, 1 + h*w, C), position
                                                 # embeddings interpolated
        for i, block in enumerate(blocks):
            tokens = block(tokens)
            tokens = adapters[str(i)](tokens, (h, w), 1, text)  # if any
            if i in out_indices: grid_i = patch tokens -> (B, C, h, w)

    The grids are the raw block outputs (no ``post_layernorm``: HF applies
    it to the pooled CLS token only). Input normalisation (CLIP mean/std)
    belongs to the data preprocessor. Sizes not divisible by the patch
    raise ValueError (no implicit padding).

    Args:
        pretrained: HF hub id / folder of a CLIP (vision) model, an OpenAI
            ``.pt`` checkpoint, or None for random init from ``config``.
        config: ``transformers.CLIPVisionConfig`` kwargs (random init).
        out_indices: 0-based block indices to return.
        adapter: adapter cfg without ``in_channels``/``text_channels``;
            None for no adapters.
        adapter_indices: blocks followed by an adapter.
        text_channels: width C_t of the text features.
        trainable: PET rule for the ViT.
        frozen_stages: freeze the embeddings and blocks
            ``[0, frozen_stages)`` completely (PET rule overridden), as
            mmseg's ``frozen_stages``; with no adapter among them the
            backward pass stops at block ``frozen_stages``. -1: nothing.
        with_cp: activation checkpointing of the blocks in training
            (recompute instead of storing activations: less memory for
            large batches, about one more block forward in time).
        revision: HF hub revision (commit hash, tag or branch) of a hub
            id ``pretrained``: pin it so that a re-upload of the weights
            does not change the frozen encoder under trained checkpoints.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 config: Optional[dict] = None,
                 out_indices: Sequence[int] = (3, 7, 11),
                 adapter: Optional[dict] = None,
                 adapter_indices: Sequence[int] = (1, 3, 5, 7, 9, 11),
                 text_channels: Optional[int] = None,
                 trainable: PETRule = 'norm_bias',
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 revision: Optional[str] = None) -> None:
        super().__init__()
        model = build_clip_vision_model(pretrained, config, revision)
        # 5.x: CLIPVisionModel holds the parts; 4.x: under .vision_model
        self.encoder = getattr(model, 'vision_model', model)
        # same values; the backward keeps one tensor per MLP, not two
        use_lean_quick_gelu(self.encoder)
        cfg = model.config
        self.patch_size = cfg.patch_size
        self.embed_dim = cfg.hidden_size
        num_blocks = len(self.encoder.encoder.layers)
        self._setup_adapters([cfg.hidden_size] * num_blocks, out_indices,
                             adapter, adapter_indices, text_channels,
                             trainable)
        last = self.out_indices[-1]
        self._freeze_unused([getattr(self.encoder, 'post_layernorm', None)] +
                            list(self.encoder.encoder.layers[last + 1:]))
        self._freeze_stages(
            [self.encoder.embeddings, self.encoder.pre_layrnorm],
            self.encoder.encoder.layers, frozen_stages)
        self.with_cp = with_cp

    num_prefix = 1  # the class token

    def encoder_blocks(self) -> Sequence[nn.Module]:
        return self.encoder.encoder.layers

    def stem(self, img: Tensor) -> Tensor:
        """Patch + position embeddings (interpolated to the input size),
        then CLIP's pre-layernorm: (B, 1 + h*w, C)."""
        tokens = self.encoder.embeddings(img, interpolate_pos_encoding=True)
        return self.encoder.pre_layrnorm(tokens)
