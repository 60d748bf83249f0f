"""Multi-head attention computed in the batch-first layout.

:class:`BatchFirstAttention` is ``nn.MultiheadAttention(batch_first=True)``
with the same parameters, initialisation and state-dict keys, whose forward
projects the batch-first inputs straight into the (B, heads, N, head_dim)
layout of ``F.scaled_dot_product_attention`` instead of going through
PyTorch's sequence-first implementation (which transposes the inputs, the
projections and the output, one copy each, in the forward and the backward
pass). Outputs are the same up to float rounding. Calls it does not cover
(attention weights, ``attn_mask``, ``add_bias_kv``, ``add_zero_attn``) go to
``nn.MultiheadAttention.forward``.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class BatchFirstAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` with ``batch_first=True``, computed in the
    batch-first layout (see the module doc).

    Args:
        embed_dim: query and output width E (divisible by ``num_heads``).
        num_heads: attention heads.
        dropout: dropout on the attention weights (training only).
        kdim: key width (default E).
        vdim: value width (default E).
        bias: biases of the input and output projections.
    """

    def __init__(self,
                 embed_dim: int,
                 num_heads: int,
                 dropout: float = 0.0,
                 kdim: Optional[int] = None,
                 vdim: Optional[int] = None,
                 bias: bool = True) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias,
                         kdim=kdim, vdim=vdim, batch_first=True)

    def _project(self, query: Tensor, key: Tensor,
                 value: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The input projections, one matrix product per distinct input
        (self-attention: one for q, k and v)."""
        e = self.embed_dim
        bias = self.in_proj_bias

        def part(w: Tensor, lo: int, hi: int, x: Tensor) -> Tensor:
            return F.linear(x, w, None if bias is None else bias[lo:hi])

        if not self._qkv_same_embed_dim:
            q = part(self.q_proj_weight, 0, e, query)
            if key is value:
                k, v = part(torch.cat([self.k_proj_weight,
                                       self.v_proj_weight]), e, 3 * e,
                            key).chunk(2, dim=-1)
            else:
                k = part(self.k_proj_weight, e, 2 * e, key)
                v = part(self.v_proj_weight, 2 * e, 3 * e, value)
            return q, k, v
        w = self.in_proj_weight
        if key is query:
            if value is query:
                return tuple(part(w, 0, 3 * e, query).chunk(3, dim=-1))
            q, k = part(w[:2 * e], 0, 2 * e, query).chunk(2, dim=-1)
            return q, k, part(w[2 * e:], 2 * e, 3 * e, value)
        q = part(w[:e], 0, e, query)
        if key is value:
            k, v = part(w[e:], e, 3 * e, key).chunk(2, dim=-1)
        else:
            k = part(w[e:2 * e], e, 2 * e, key)
            v = part(w[2 * e:], 2 * e, 3 * e, value)
        return q, k, v

    def forward(self,
                query: Tensor,
                key: Tensor,
                value: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True,
                attn_mask: Optional[Tensor] = None,
                average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Attend (batch first).

        Args:
            query: (B, N, E).
            key: (B, L, kdim).
            value: (B, L, vdim).
            key_padding_mask: (B, L), bool (True: padding, not attended)
                or float (added to the scores).
            need_weights: return the head-averaged weights (computed by
                ``nn.MultiheadAttention``).

        Returns:
            tuple: the output (B, N, E) and the weights (None unless
            ``need_weights``).
        """
        if (need_weights or attn_mask is not None or is_causal
                or self.bias_k is not None or self.add_zero_attn
                or query.dim() != 3):
            return super().forward(
                query, key, value, key_padding_mask=key_padding_mask,
                need_weights=need_weights, attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal)
        b, n, e = query.shape
        if e != self.embed_dim:
            raise ValueError(f'query must have shape (B, N, {self.embed_dim}'
                             f'), got {tuple(query.shape)}')
        if key.dim() != 3 or key.shape[:2] != value.shape[:2] or (
                key.shape[0] != b):
            raise ValueError(
                f'key and value must have shapes (B={b}, L, kdim) and (B, L,'
                f' vdim), got {tuple(key.shape)} and {tuple(value.shape)}')
        length = key.shape[1]
        heads, dim = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        q = q.view(b, n, heads, dim).transpose(1, 2)
        k = k.view(b, length, heads, dim).transpose(1, 2)
        v = v.view(b, length, heads, dim).transpose(1, 2)
        mask = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, length):
                raise ValueError(
                    f'key_padding_mask must have shape ({b}, {length}) (B, '
                    f'L), got {tuple(key_padding_mask.shape)}')
            if key_padding_mask.dtype == torch.bool:
                mask = (~key_padding_mask)[:, None, None, :]
            else:
                mask = key_padding_mask.to(q.dtype)[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, n, e)
        return self.out_proj(out), None
