"""Meta's DINOv2 checkpoints (the torch-hub files users hold, e.g.
``dinov2_vitb14_reg4_pretrain.pth``, ``dinov2_vitl14_reg4_pretrain.pth``)
converted to the HF transformers layout.

Meta's layout: ``cls_token`` (1, 1, C), ``register_tokens`` (1, R, C),
``pos_embed`` (1, 1 + g*g, C) (the registers have no position),
``mask_token`` (1, C), ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv,
attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm.*``.
``attn.qkv`` stacks the query, key and value projections along its output
dimension, in that order. The SwiGLU MLP of ViT-g is not supported.
"""
from typing import Dict, Iterable

import torch
from torch import Tensor

HEAD_DIM = 64  # every DINOv2 size uses 64-wide heads (S 6, B 12, L 16)


def is_meta_dinov2(state_dict: Dict[str, Tensor]) -> bool:
    """Whether ``state_dict`` is in Meta's DINOv2 layout."""
    return ('cls_token' in state_dict and 'pos_embed' in state_dict
            and 'patch_embed.proj.weight' in state_dict
            and any(k.startswith('blocks.') for k in state_dict))


def load_meta_dinov2(path: str) -> Dict[str, Tensor]:
    """Read a Meta DINOv2 ``.pth`` (tensors only: ``weights_only=True``).

    Raises:
        ValueError: the file is not a state dict in Meta's layout.
    """
    state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and 'model' in state and isinstance(
            state['model'], dict):
        state = state['model']
    if not isinstance(state, dict) or not is_meta_dinov2(state):
        keys = list(state)[:5] if isinstance(state, dict) else type(state)
        raise ValueError(
            f'{path} is not a DINOv2 checkpoint in Meta\'s layout (expected '
            f'cls_token, pos_embed, patch_embed.proj.weight, blocks.N.*; '
            f'found {keys})')
    if any('.mlp.w12.' in k for k in state):
        raise ValueError(f'{path}: DINOv2 with a SwiGLU MLP (ViT-g) is not '
                         f'supported')
    return state


def meta_dinov2_config(state_dict: Dict[str, Tensor]) -> dict:
    """HF ``Dinov2[WithRegisters]Config`` kwargs that fit the checkpoint."""
    hidden = int(state_dict['cls_token'].shape[-1])
    layers = 1 + max(int(k.split('.')[1]) for k in state_dict
                     if k.startswith('blocks.'))
    patch = int(state_dict['patch_embed.proj.weight'].shape[-1])
    grid = int(round((state_dict['pos_embed'].shape[1] - 1) ** 0.5))
    fc1 = state_dict['blocks.0.mlp.fc1.weight'].shape[0]
    cfg = dict(hidden_size=hidden, num_hidden_layers=layers,
               num_attention_heads=hidden // HEAD_DIM, patch_size=patch,
               image_size=grid * patch, mlp_ratio=fc1 // hidden,
               layer_norm_eps=1e-6)
    registers = state_dict.get('register_tokens')
    cfg['num_register_tokens'] = 0 if registers is None else int(
        registers.shape[1])
    return cfg


def convert_meta_dinov2(state_dict: Dict[str, Tensor],
                        target_keys: Iterable[str]) -> Dict[str, Tensor]:
    """Meta's state dict -> the HF state dict of a model whose keys are
    ``target_keys`` (the attention's names differ between transformers
    4.x, ``attention.attention.query`` / ``attention.output.dense``, and
    5.x, ``attention.q_proj`` / ``attention.o_proj``; both are served)."""
    target = set(target_keys)
    new5 = 'encoder.layer.0.attention.q_proj.weight' in target
    out: Dict[str, Tensor] = {
        'embeddings.cls_token': state_dict['cls_token'],
        'embeddings.position_embeddings': state_dict['pos_embed'],
        'embeddings.patch_embeddings.projection.weight':
        state_dict['patch_embed.proj.weight'],
        'embeddings.patch_embeddings.projection.bias':
        state_dict['patch_embed.proj.bias'],
        'layernorm.weight': state_dict['norm.weight'],
        'layernorm.bias': state_dict['norm.bias'],
    }
    if 'mask_token' in state_dict:
        out['embeddings.mask_token'] = state_dict['mask_token'].reshape(
            1, -1)
    if 'register_tokens' in state_dict:
        out['embeddings.register_tokens'] = state_dict['register_tokens']
    names = (('q_proj', 'k_proj', 'v_proj', 'o_proj') if new5 else
             ('attention.query', 'attention.key', 'attention.value',
              'output.dense'))
    layers = sorted({int(k.split('.')[1]) for k in state_dict
                     if k.startswith('blocks.')})
    for i in layers:
        src, dst = f'blocks.{i}.', f'encoder.layer.{i}.'
        for part in ('norm1', 'norm2', 'mlp.fc1', 'mlp.fc2'):
            for p in ('weight', 'bias'):
                out[f'{dst}{part}.{p}'] = state_dict[f'{src}{part}.{p}']
        out[f'{dst}layer_scale1.lambda1'] = state_dict[f'{src}ls1.gamma']
        out[f'{dst}layer_scale2.lambda1'] = state_dict[f'{src}ls2.gamma']
        for p in ('weight', 'bias'):
            q, k, v = state_dict[f'{src}attn.qkv.{p}'].chunk(3, dim=0)
            for name, t in zip(names[:3], (q, k, v)):
                out[f'{dst}attention.{name}.{p}'] = t
            out[f'{dst}attention.{names[3]}.{p}'] = \
                state_dict[f'{src}attn.proj.{p}']
    return out


__all__ = ['is_meta_dinov2', 'load_meta_dinov2', 'meta_dinov2_config',
           'convert_meta_dinov2']
