"""A text encoder with DETRIS's text adapters beside the MLP of selected
layers (CLIP's text transformer, or a BERT-family encoder)."""
import copy
import functools
from typing import Dict, Optional, Sequence

import torch.nn as nn
from torch import Tensor

from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS
from .parallel import ForwardContext, stash_first_arg


def _adapter_sites(model: nn.Module):
    """``[(capture_module, output_module), ...]`` per layer of a supported
    HF text model, and the layer width.

    - CLIP (``CLIPTextModel[WithProjection]``): layer
      ``x = x + attn(ln1(x)); x = x + mlp(ln2(x))``; the adapter reads the
      input of ``layer_norm2`` (x after attention, as DETRIS) and its term
      is added to the output of ``mlp``.
    - BERT family (``BertModel`` and the like, post-norm): the adapter
      reads the attention output (the input of ``intermediate``) and its
      term is added to ``output.dense`` before the residual and LayerNorm.
    """
    text_model = getattr(model, 'text_model', None)
    if text_model is not None:
        layers = text_model.encoder.layers
        return [(layer.layer_norm2, layer.mlp) for layer in layers], \
            text_model.config.hidden_size
    encoder = getattr(model, 'encoder', None)
    layers = getattr(encoder, 'layer', None)
    if layers is not None and all(
            hasattr(layer, 'intermediate') and hasattr(layer, 'output')
            for layer in layers):
        return [(layer.intermediate, layer.output.dense)
                for layer in layers], model.config.hidden_size
    raise ValueError(f'text adapters support CLIP text models and BERT-'
                     f'family encoders, got {type(model).__name__}')


@MODELS.register_module()
class DETRISTextEncoder(nn.Module):
    """Wraps a SERA-MM text encoder and adds adapters beside the MLP of
    selected layers (DETRIS: layers 1, 3, 5, 7, 9, 11 of CLIP's text
    transformer, width 64, factor 0.2)::

        h = x + attn(ln1(x))
        out = h + mlp(ln2(h)) + scale * adapter(h)

    The wrapped encoder keeps its own PET rule (DETRIS freezes it:
    ``trainable='none'``); the adapters train. Its feature cache is off
    (the adapters change the features as they train). Outputs are the
    wrapped encoder's ``TextFeatures``.

    Args:
        encoder: config of the wrapped encoder (``CLIPTextEncoder``,
            ``HFTextEncoder``); ``cache_size`` must be 0 or absent.
        adapter: adapter config (``in_channels`` filled in), e.g.
            ``dict(type='DETRISTextAdapter', hidden_channels=64)``.
        adapter_indices: 0-based layers with an adapter.
        scale: factor of the adapter's term (DETRIS: 0.2).

    Attributes:
        encoder: the wrapped encoder.
        adapters: ``nn.ModuleDict`` keyed by layer index.
        embed_dim: the wrapped encoder's C_t.
    """

    def __init__(self,
                 encoder: dict,
                 adapter: dict = dict(type='DETRISTextAdapter',
                                      hidden_channels=64),
                 adapter_indices: Sequence[int] = (1, 3, 5, 7, 9, 11),
                 scale: float = 0.2) -> None:
        super().__init__()
        encoder = copy.deepcopy(dict(encoder))
        if encoder.get('cache_size', 0):
            raise ValueError('DETRISTextEncoder: the wrapped encoder must '
                             'not cache features (its adapters train), got '
                             f'cache_size={encoder["cache_size"]}')
        self.encoder = MODELS.build(encoder)
        self.scale = float(scale)
        sites, width = _adapter_sites(self.encoder.model)
        indices = [int(i) for i in adapter_indices]
        bad = [i for i in indices if not 0 <= i < len(sites)]
        if bad or len(set(indices)) != len(indices):
            raise ValueError(f'adapter_indices must be distinct layer '
                             f'indices in [0, {len(sites) - 1}], got '
                             f'{list(adapter_indices)}')
        self.adapter_indices = sorted(indices)
        self.adapters = nn.ModuleDict()
        self._stash = ForwardContext()
        for i in self.adapter_indices:
            cfg = copy.deepcopy(dict(adapter))
            cfg['in_channels'] = width
            key = str(i)
            self.adapters[key] = MODELS.build(cfg)
            capture, output = sites[i]
            capture.register_forward_pre_hook(
                functools.partial(stash_first_arg, self._stash, key))
            output.register_forward_hook(
                functools.partial(self._add_hook, key))

    def _add_hook(self, key: str, module: nn.Module, args,
                  output: Tensor) -> Tensor:
        x = self._stash.values.pop(key, None)
        if x is None:
            raise RuntimeError(f'text adapter {key}: the layer input was '
                               f'not captured')
        return output + self.scale * self.adapters[key](x).to(output.dtype)

    # -------------------------------------------------- encoder interface
    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.encoder.max_length = value

    @property
    def cache_size(self) -> int:
        """Always 0: the adapters train, so features are never cached."""
        return 0

    def set_cache_size(self, cache_size: int,
                       max_bytes: Optional[int] = None) -> None:
        """Only 0 is accepted (see :attr:`cache_size`)."""
        if cache_size:
            raise ValueError(f'{type(self).__name__} cannot cache features '
                             f'(its adapters change them); got cache_size='
                             f'{cache_size}')

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    def tokenize(self, texts: Sequence[str]) -> Dict[str, Tensor]:
        return self.encoder.tokenize(texts)

    def encode_ids(self, *args, **kwargs) -> TextFeatures:
        return self.encoder.encode_ids(*args, **kwargs)

    def forward(self, texts: Sequence[str]) -> TextFeatures:
        """B raw strings -> TextFeatures (as the wrapped encoder)."""
        return self.encoder(texts)


__all__ = ['DETRISTextEncoder']
