"""Mixed precision on CPU.

mmengine's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU is present. On CPU,
autocast supports bfloat16 only; bf16 has fp32's exponent range, so no loss
scaling is needed and the wrapper is a plain ``OptimWrapper`` whose
``optim_context`` enables ``torch.autocast('cpu', dtype=torch.bfloat16)``.
"""
from contextlib import contextmanager
from typing import Iterator, Union

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from sera_mm.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` with bfloat16 autocast on CPU (``tools/train.py
    --amp`` without CUDA).

    Args:
        dtype: must be 'bfloat16' (CPU autocast supports nothing else).
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError('CPU autocast supports only bfloat16, got '
                             f'dtype={dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield
