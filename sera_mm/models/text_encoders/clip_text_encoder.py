"""CLIP text tower as a referring-expression encoder."""
import os.path as osp
from typing import Optional, Sequence

import torch
import torch.nn as nn

from sera_mm.models.layers import use_lean_quick_gelu
from sera_mm.models.utils.clip_tokenizer import build_clip_tokenizer
from sera_mm.models.utils.openai_clip import (convert_openai_clip,
                                              split_clip_state_dict)
from sera_mm.models.utils.pet import PETRule, apply_pet
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import hub_kwargs, resolve_pretrained
from .base_text_encoder import BaseTextEncoder
from sera_mm.structures import TextFeatures

OPENAI_SUFFIXES = ('.pt', '.pth')


def build_clip_text_model(pretrained: Optional[str],
                          config: Optional[dict],
                          revision: Optional[str] = None) -> nn.Module:
    """``CLIPTextModelWithProjection`` from a hub id / folder, an OpenAI
    ``.pt`` file or (``pretrained=None``) random init from ``config``."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    path = resolve_pretrained(pretrained)
    if path is None:
        cfg = CLIPTextConfig(**(config or {}))
        return CLIPTextModelWithProjection(cfg)
    if osp.isfile(path) and path.endswith(OPENAI_SUFFIXES):
        clip_cfg, state_dict = convert_openai_clip(path)
        text_cfg = clip_cfg.text_config
        text_cfg.projection_dim = clip_cfg.projection_dim
        model = CLIPTextModelWithProjection(text_cfg)
        missing, unexpected = model.load_state_dict(
            split_clip_state_dict(state_dict, 'text'), strict=False)
        missing = [k for k in missing if not k.endswith('position_ids')]
        if missing or unexpected:
            raise RuntimeError(f'converting {path}: missing keys {missing}, '
                               f'unexpected keys {unexpected}')
        return model
    from transformers import AutoConfig
    hub = hub_kwargs(revision)
    cfg = AutoConfig.from_pretrained(path, **hub)
    if getattr(cfg, 'model_type', None) == 'clip':
        # a full CLIP: its text config does not carry the shared
        # projection size
        text_cfg = cfg.text_config
        text_cfg.projection_dim = cfg.projection_dim
        return CLIPTextModelWithProjection.from_pretrained(
            path, config=text_cfg, **hub)
    return CLIPTextModelWithProjection.from_pretrained(path, **hub)


@MODELS.register_module()
class CLIPTextEncoder(BaseTextEncoder):
    """CLIP's text transformer; tokenises raw expressions itself.

    Outputs (``TextFeatures``):

    * ``words`` (B, L, C_t): the final-LayerNorm token features, passed
      through ``text_projection`` when ``project_words`` (the CRIS
      convention; it keeps words and sentence in one space of width
      ``projection_dim``),
    * ``sentence`` (B, C_t): ``text_projection`` of the EOT token,
    * ``pad_mask`` (B, L): True after the EOT token.

    The text transformer is causal (as CLIP); no padding mask is passed to
    it, so positions up to EOT are exactly those of an unpadded input.

    Args:
        pretrained: HF hub id or folder holding a CLIP (text) model, an
            OpenAI ``.pt`` checkpoint, or None for random init.
        config: ``transformers.CLIPTextConfig`` kwargs for random init
            (``vocab_size`` must cover the tokenizer: 49408).
        max_length: tokens per expression, SOT and EOT included.
        trainable: PET rule (see :func:`sera_mm.models.utils.apply_pet`).
        project_words: apply ``text_projection`` to the word features; when
            False, words keep width ``hidden_size`` which must then equal
            ``projection_dim``.
        tokenizer: folder/hub id with tokenizer files; default: those of
            ``pretrained`` if any, else OpenAI's BPE built offline.
        cache_size: keep the features of this many recent expressions
            when the encoder is fully frozen (``trainable='none'``); 0
            disables the cache (see :class:`BaseTextEncoder`).
        revision: HF hub revision (commit hash, tag or branch) of a hub id
            ``pretrained``; pin it so a re-upload does not change the frozen
            weights under trained checkpoints.

    Attributes:
        embed_dim: C_t = ``projection_dim``.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 config: Optional[dict] = None,
                 max_length: int = 17,
                 trainable: PETRule = 'norm_bias',
                 project_words: bool = True,
                 tokenizer: Optional[str] = None,
                 cache_size: int = 0,
                 revision: Optional[str] = None) -> None:
        super().__init__()
        self._init_text_state(max_length)
        self.model = build_clip_text_model(pretrained, config, revision)
        use_lean_quick_gelu(self.model)  # same values, leaner backward
        cfg = self.model.config
        tok_src = tokenizer
        if tok_src is None and pretrained is not None:
            resolved = resolve_pretrained(pretrained)
            if not (osp.isfile(resolved)
                    and resolved.endswith(OPENAI_SUFFIXES)):
                tok_src = resolved
        else:
            tok_src = resolve_pretrained(tok_src)
        self.tokenizer = build_clip_tokenizer(tok_src)
        if len(self.tokenizer) > cfg.vocab_size:
            raise ValueError(
                f'the CLIP text config has vocab_size={cfg.vocab_size} but '
                f'the tokenizer has {len(self.tokenizer)} tokens')
        if max_length > cfg.max_position_embeddings:
            raise ValueError(
                f'max_length={max_length} exceeds the text model\'s '
                f'max_position_embeddings={cfg.max_position_embeddings}')
        self.project_words = project_words
        if not project_words and cfg.hidden_size != cfg.projection_dim:
            raise ValueError(
                f'project_words=False needs hidden_size == projection_dim, '
                f'got {cfg.hidden_size} and {cfg.projection_dim}')
        self.embed_dim = cfg.projection_dim
        self.eos_token_id = self.tokenizer.eos_token_id
        self.trainable = trainable
        apply_pet(self.model, trainable)
        self.set_cache_size(cache_size)

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        """Encode a batch of expressions.

        Args:
            texts: B raw strings (non-empty).

        Returns:
            TextFeatures with words (B, L, C_t), pad_mask (B, L) bool,
            sentence (B, C_t); L = ``max_length``.
        """
        enc = self.tokenize(texts)
        ids = enc['input_ids']
        if not bool((ids == self.eos_token_id).any(dim=1).all()):
            raise ValueError('an encoded expression has no EOT token')
        return self.encode_ids(ids, enc.get('attention_mask'))

    def encode_ids(self,
                   input_ids: torch.Tensor,
                   attention_mask: Optional[torch.Tensor] = None
                   ) -> TextFeatures:
        """Encode tokenised expressions (what :meth:`encode` does after
        :meth:`tokenize`; the path the ONNX export traces).

        Args:
            input_ids: (B, L) token ids, each row with an EOT token (the
                padding is EOT too).
            attention_mask: unused (the causal text transformer sees no
                padding before the first EOT); accepted so that every text
                encoder takes the tokenizer's output.

        Returns:
            TextFeatures with words (B, L, C_t), pad_mask (B, L) bool (True
            after the first EOT), sentence (B, C_t).
        """
        ids = input_ids
        out = self.model.text_model(input_ids=ids)
        hidden = out.last_hidden_state  # (B, L, C) after final LayerNorm
        is_eos = ids == self.eos_token_id
        eot = is_eos.int().argmax(dim=1)  # first EOT (pad is EOT too)
        batch = torch.arange(ids.shape[0], device=ids.device)
        if self.project_words:
            words = self.model.text_projection(hidden)
            sentence = words[batch, eot]
        else:
            words = hidden
            sentence = self.model.text_projection(hidden[batch, eot])
        positions = torch.arange(ids.shape[1], device=ids.device)
        pad_mask = positions[None, :] > eot[:, None]
        return TextFeatures(words=words, pad_mask=pad_mask, sentence=sentence)
