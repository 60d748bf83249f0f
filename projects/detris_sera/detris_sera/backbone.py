"""DINOv2 with DETRIS's adapters beside the MLP of selected blocks."""
import functools
from typing import List, Optional

import torch.nn as nn
from torch import Tensor

from sera_mm.models.backbones.dinov2 import DINOv2Backbone
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS
from .parallel import ForwardContext


@MODELS.register_module()
class DETRISDINOv2Backbone(DINOv2Backbone):
    """DINOv2 (with registers) whose adapters sit beside the blocks' MLP.

    In a block with an adapter (DETRIS: blocks 1, 3, 5, 7, 9, 11)::

        x = x + ls1(attn(norm1(x)))
        x = x + ls2(mlp(norm2(x)) + scale * adapter.delta(norm2(x), text))

    with ``scale`` = 0.2 (DETRIS). The pretrained block runs unchanged; a
    forward hook on its ``mlp`` adds the adapter's term (so the layer scale
    ``ls2`` multiplies both, as in DETRIS). The adapter must provide
    ``delta(tokens, hw, num_prefix, text) -> (B, N, C)``
    (:class:`~projects.detris_sera.detris_sera.DETRISVisualAdapter`).

    Outputs as :class:`DINOv2Backbone` (DETRIS: ``out_indices=(4, 8, 11)``,
    the last one through the final layernorm).

    Activation checkpointing (``with_cp``) is refused with adapters: the
    recomputed block would run its adapter (and its BatchNorm) again.

    Args:
        adapter_scale: the factor of the adapter's term (DETRIS: 0.2).
        *args, **kwargs: :class:`DINOv2Backbone` arguments.
    """

    def __init__(self, *args, adapter_scale: float = 0.2, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.with_cp and len(self.adapters):
            # recomputing a block would run its hooked adapter (and its
            # BatchNorm statistics) again, with the latest forward's text
            raise ValueError(f'{type(self).__name__}: with_cp=True is not '
                             f'supported with adapters beside the MLP')
        self.adapter_scale = float(adapter_scale)
        self._context = ForwardContext()
        layers = self.encoder.encoder.layer
        for key, adapter in self.adapters.items():
            if not hasattr(adapter, 'delta'):
                raise ValueError(
                    f'{type(self).__name__} runs adapters beside the MLP and '
                    f'needs adapter.delta(tokens, hw, num_prefix, text); '
                    f'{type(adapter).__name__} has none')
            mlp = getattr(layers[int(key)], 'mlp', None)
            if not isinstance(mlp, nn.Module):
                raise ValueError(f'block {key} has no mlp module to place '
                                 f'the adapter beside')
            mlp.register_forward_hook(
                functools.partial(self._mlp_hook, key))

    def _mlp_hook(self, key: str, module: nn.Module, args, output: Tensor
                  ) -> Tensor:
        name = type(self).__name__
        adapter = self.adapters[key]
        delta = adapter.delta(args[0], self._context.get('hw', name),
                              self.num_prefix,
                              self._context.get('text', name))
        return output + self.adapter_scale * delta.to(output.dtype)

    def _adapt(self, idx: int, tokens: Tensor, hw, num_prefix: int,
               text: Optional[TextFeatures]) -> Tensor:
        """No after-block adapters: they run inside the blocks."""
        return tokens

    def forward(self, img: Tensor,
                text: Optional[TextFeatures] = None) -> List[Tensor]:
        """As :meth:`DINOv2Backbone.forward`; ``text`` is required when
        adapters are used."""
        if len(self.adapters) and text is None:
            raise ValueError(f'{type(self).__name__} has adapters and needs '
                             f'text features, got text=None')
        self._check_image(img, self.patch_size)
        hw = (img.shape[2] // self.patch_size,
              img.shape[3] // self.patch_size)
        self._context.set(hw=hw, text=text)
        return super().forward(img, text)


__all__ = ['DETRISDINOv2Backbone']
