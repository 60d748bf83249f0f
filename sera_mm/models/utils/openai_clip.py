"""Convert an OpenAI CLIP checkpoint to the HF ``CLIPModel`` layout.

OpenAI releases CLIP as TorchScript archives (``ViT-B-16.pt``); a plain
state dict with the same names is accepted too. The geometry (widths,
depths, patch size, resolution, vocabulary, context length, embedding
size) is read off the tensor shapes, so no side file is needed. Only ViT
image towers are supported (the ResNet ``RN50`` family has another layout).

Name mapping (OpenAI -> HF), for ``visual.`` -> ``vision_model.`` and the
text tower -> ``text_model.``::

    visual.conv1.weight              embeddings.patch_embedding.weight
    visual.class_embedding           embeddings.class_embedding
    visual.positional_embedding      embeddings.position_embedding.weight
    visual.ln_pre                    pre_layrnorm            (HF's spelling)
    visual.ln_post                   post_layernorm
    visual.proj (W, E)               visual_projection.weight (E, W)
    token_embedding                  text_model.embeddings.token_embedding
    positional_embedding             text_model.embeddings.position_embedding
    ln_final                         text_model.final_layer_norm
    text_projection (W, E)           text_projection.weight (E, W)
    logit_scale                      logit_scale
    *.resblocks.N.attn.in_proj_*     encoder.layers.N.self_attn.{q,k,v}_proj
    *.resblocks.N.attn.out_proj      encoder.layers.N.self_attn.out_proj
    *.resblocks.N.ln_1 / ln_2        encoder.layers.N.layer_norm1 / 2
    *.resblocks.N.mlp.c_fc / c_proj  encoder.layers.N.mlp.fc1 / fc2

Both towers use QuickGELU (``hidden_act='quick_gelu'``) and
``layer_norm_eps=1e-5``, as OpenAI's model.
"""
import os
import os.path as osp
import zipfile
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

# OpenAI's BPE vocabulary ends with <|startoftext|>, <|endoftext|>.
_EXTRA_KEYS = ('input_resolution', 'context_length', 'vocab_size')


def is_openai_clip_checkpoint(state_dict: Dict[str, Tensor]) -> bool:
    """True if ``state_dict`` uses OpenAI CLIP's parameter names."""
    return ('visual.conv1.weight' in state_dict
            or ('token_embedding.weight' in state_dict
                and 'ln_final.weight' in state_dict))


def load_openai_clip_state_dict(path: str) -> Dict[str, Tensor]:
    """Read an OpenAI CLIP file: a TorchScript archive or a state dict.

    Args:
        path: ``.pt`` file.

    Returns:
        The flat state dict (float32 tensors on CPU).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'OpenAI CLIP checkpoint {path!r} does not '
                                f'exist')
    state_dict = None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_script = any(n.split('/', 1)[-1].startswith('code/')
                            for n in zf.namelist())
        if is_script:
            state_dict = torch.jit.load(path, map_location='cpu').state_dict()
    if state_dict is None:
        state_dict = torch.load(path, map_location='cpu', weights_only=True)
        for key in ('state_dict', 'model'):
            if isinstance(state_dict, dict) and key in state_dict and \
                    isinstance(state_dict[key], dict):
                state_dict = state_dict[key]
    if not isinstance(state_dict, dict) or not is_openai_clip_checkpoint(
            state_dict):
        raise ValueError(f'{path!r} is not an OpenAI CLIP checkpoint (no '
                         f"'visual.conv1.weight' / 'token_embedding.weight')")
    return {k: v.float() if v.is_floating_point() else v
            for k, v in state_dict.items()}


def _num_blocks(state_dict: Dict[str, Tensor], prefix: str) -> int:
    ids = {int(k[len(prefix):].split('.', 1)[0]) for k in state_dict
           if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def _heads(width: int, given: Optional[int]) -> int:
    heads = given if given is not None else max(1, width // 64)
    if width % heads:
        raise ValueError(f'width {width} is not divisible by {heads} heads')
    return heads


def _convert_blocks(src: Dict[str, Tensor], src_prefix: str,
                    dst_prefix: str, out: Dict[str, Tensor]) -> None:
    for key, value in src.items():
        if not key.startswith(src_prefix):
            continue
        rest = key[len(src_prefix):]  # 'N.attn.in_proj_weight'
        idx, sub = rest.split('.', 1)
        if sub == 'attn_mask':  # a causal-mask buffer, not a weight
            continue
        base = f'{dst_prefix}{idx}.'
        if sub in ('attn.in_proj_weight', 'attn.in_proj_bias'):
            kind = sub.rsplit('_', 1)[-1]
            q, k, v = value.chunk(3, dim=0)
            for name, part in zip('qkv', (q, k, v)):
                out[f'{base}self_attn.{name}_proj.{kind}'] = part.clone()
            continue
        mapping = {
            'attn.out_proj.': 'self_attn.out_proj.',
            'ln_1.': 'layer_norm1.',
            'ln_2.': 'layer_norm2.',
            'mlp.c_fc.': 'mlp.fc1.',
            'mlp.c_proj.': 'mlp.fc2.',
        }
        for old, new in mapping.items():
            if sub.startswith(old):
                out[base + new + sub[len(old):]] = value
                break
        else:
            raise KeyError(f'unexpected OpenAI CLIP key {key!r}')


def convert_openai_clip(
    state_dict_or_path,
    vision_heads: Optional[int] = None,
    text_heads: Optional[int] = None,
) -> Tuple['transformers.CLIPConfig', Dict[str, Tensor]]:  # noqa: F821
    """Convert an OpenAI CLIP checkpoint to HF ``CLIPModel``'s layout.

    Args:
        state_dict_or_path: a ``.pt`` path (TorchScript archive or state
            dict) or an already loaded state dict with OpenAI's names.
        vision_heads / text_heads: attention heads; default width // 64
            (OpenAI's rule for every released model).

    Returns:
        ``(config, state_dict)``: a ``transformers.CLIPConfig`` and a state
        dict that ``CLIPModel(config).load_state_dict`` accepts (strict; the
        non-persistent ``position_ids`` buffers excepted).
    """
    from transformers import CLIPConfig

    if isinstance(state_dict_or_path, (str, os.PathLike)):
        src = load_openai_clip_state_dict(os.fspath(state_dict_or_path))
    else:
        src = dict(state_dict_or_path)
    if 'visual.layer1.0.conv1.weight' in src:
        raise ValueError('ResNet CLIP checkpoints are not supported; only the '
                         'ViT image towers (visual.conv1 patch embedding)')
    for key in _EXTRA_KEYS:
        src.pop(key, None)
    required = ('visual.conv1.weight', 'visual.positional_embedding',
                'visual.proj', 'token_embedding.weight',
                'positional_embedding', 'text_projection')
    missing = [k for k in required if k not in src]
    if missing:
        raise ValueError(f'OpenAI CLIP state dict lacks {missing}')

    # geometry from shapes
    conv1 = src['visual.conv1.weight']  # (W, 3, p, p)
    v_width, _, patch, _ = conv1.shape
    v_layers = _num_blocks(src, 'visual.transformer.resblocks.')
    grid = round((src['visual.positional_embedding'].shape[0] - 1)**0.5)
    if grid * grid + 1 != src['visual.positional_embedding'].shape[0]:
        raise ValueError('visual.positional_embedding is not 1 + a square '
                         'number of positions')
    image_size = grid * patch
    embed_dim = src['visual.proj'].shape[1]
    vocab, t_width = src['token_embedding.weight'].shape
    context = src['positional_embedding'].shape[0]
    t_layers = _num_blocks(src, 'transformer.resblocks.')
    v_mlp = src['visual.transformer.resblocks.0.mlp.c_fc.weight'].shape[0]
    t_mlp = src['transformer.resblocks.0.mlp.c_fc.weight'].shape[0]
    if src['text_projection'].shape != (t_width, embed_dim):
        raise ValueError(
            f'text_projection has shape {tuple(src["text_projection"].shape)}'
            f', expected ({t_width}, {embed_dim})')

    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab, hidden_size=t_width, intermediate_size=t_mlp,
            num_hidden_layers=t_layers,
            num_attention_heads=_heads(t_width, text_heads),
            max_position_embeddings=context, hidden_act='quick_gelu',
            layer_norm_eps=1e-5, projection_dim=embed_dim,
            bos_token_id=vocab - 2, eos_token_id=vocab - 1,
            pad_token_id=vocab - 1),
        vision_config=dict(
            hidden_size=v_width, intermediate_size=v_mlp,
            num_hidden_layers=v_layers,
            num_attention_heads=_heads(v_width, vision_heads),
            image_size=image_size, patch_size=patch, hidden_act='quick_gelu',
            layer_norm_eps=1e-5, projection_dim=embed_dim),
        projection_dim=embed_dim)

    out: Dict[str, Tensor] = {}
    v, t = 'vision_model.', 'text_model.'
    out[v + 'embeddings.patch_embedding.weight'] = conv1
    out[v + 'embeddings.class_embedding'] = src['visual.class_embedding']
    out[v + 'embeddings.position_embedding.weight'] = \
        src['visual.positional_embedding']
    for kind in ('weight', 'bias'):
        out[f'{v}pre_layrnorm.{kind}'] = src[f'visual.ln_pre.{kind}']
        out[f'{v}post_layernorm.{kind}'] = src[f'visual.ln_post.{kind}']
        out[f'{t}final_layer_norm.{kind}'] = src[f'ln_final.{kind}']
    out['visual_projection.weight'] = src['visual.proj'].t().contiguous()
    out[t + 'embeddings.token_embedding.weight'] = src[
        'token_embedding.weight']
    out[t + 'embeddings.position_embedding.weight'] = src[
        'positional_embedding']
    out['text_projection.weight'] = src['text_projection'].t().contiguous()
    if 'logit_scale' in src:
        out['logit_scale'] = src['logit_scale'].reshape(())
    _convert_blocks(src, 'visual.transformer.resblocks.',
                    v + 'encoder.layers.', out)
    _convert_blocks(src, 'transformer.resblocks.', t + 'encoder.layers.',
                    out)
    return config, out


def split_clip_state_dict(state_dict: Dict[str, Tensor],
                          tower: str) -> Dict[str, Tensor]:
    """Keys of one tower of an HF-layout CLIP state dict.

    Args:
        state_dict: HF ``CLIPModel`` layout.
        tower: 'vision' (``vision_model.*``, ``visual_projection.*``) or
            'text' (``text_model.*``, ``text_projection.*``).
    """
    if tower not in ('vision', 'text'):
        raise ValueError(f"tower must be 'vision' or 'text', got {tower!r}")
    prefixes = (('vision_model.', 'visual_projection.') if tower == 'vision'
                else ('text_model.', 'text_projection.'))
    return {k: v for k, v in state_dict.items() if k.startswith(prefixes)}
