"""OpenAI CLIP checkpoint conversion: a small model written with OpenAI's
parameter names and math is saved (state dict and TorchScript), converted,
and compared with HF's CLIP and our wrappers."""
import os
import warnings

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from sera_mm.models.backbones import CLIPVisionBackbone  # noqa: E402
from sera_mm.models.text_encoders import CLIPTextEncoder  # noqa: E402
from sera_mm.models.utils.openai_clip import (  # noqa: E402
    convert_openai_clip, is_openai_clip_checkpoint)

VOCAB = 49408  # OpenAI's BPE size, so the real tokenizer fits
CONTEXT = 20
WIDTH = 128  # 2 heads by OpenAI's width // 64 rule
EMBED = 64
PATCH, RES = 8, 32


class QuickGELU(nn.Module):

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResBlock(nn.Module):

    def __init__(self, width, heads, causal_len=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module('c_fc', nn.Linear(width, width * 4))
        self.mlp.add_module('gelu', QuickGELU())
        self.mlp.add_module('c_proj', nn.Linear(width * 4, width))
        self.ln_2 = nn.LayerNorm(width)
        mask = None
        if causal_len is not None:
            mask = torch.full((causal_len, causal_len), float('-inf'))
            mask = mask.triu(1)
        self.register_buffer('attn_mask', mask, persistent=False)

    def forward(self, x):
        y = self.ln_1(x)
        mask = None if self.attn_mask is None else \
            self.attn_mask[:x.shape[1], :x.shape[1]]
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):

    def __init__(self, width, layers, heads, causal_len=None):
        super().__init__()
        self.resblocks = nn.Sequential(
            *[ResBlock(width, heads, causal_len) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class Visual(nn.Module):

    def __init__(self):
        super().__init__()
        g = RES // PATCH
        self.conv1 = nn.Conv2d(3, WIDTH, PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(WIDTH) * 0.1)
        self.positional_embedding = nn.Parameter(
            torch.randn(g * g + 1, WIDTH) * 0.1)
        self.ln_pre = nn.LayerNorm(WIDTH)
        self.transformer = Transformer(WIDTH, 2, WIDTH // 64)
        self.ln_post = nn.LayerNorm(WIDTH)
        self.proj = nn.Parameter(torch.randn(WIDTH, EMBED) * WIDTH**-0.5)

    def tokens(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.positional_embedding
        return self.transformer(self.ln_pre(x))

    def forward(self, x):
        return self.ln_post(self.tokens(x)[:, 0]) @ self.proj


class OpenAIStyleCLIP(nn.Module):
    """OpenAI CLIP (ViT) with its parameter names and math, small."""

    def __init__(self):
        super().__init__()
        self.visual = Visual()
        self.token_embedding = nn.Embedding(VOCAB, WIDTH)
        self.positional_embedding = nn.Parameter(
            torch.randn(CONTEXT, WIDTH) * 0.1)
        self.transformer = Transformer(WIDTH, 2, WIDTH // 64, CONTEXT)
        self.ln_final = nn.LayerNorm(WIDTH)
        self.text_projection = nn.Parameter(
            torch.randn(WIDTH, EMBED) * WIDTH**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))
        # non-trivial norm parameters so that a wrong mapping shows
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)

    def encode_text(self, ids):
        x = self.token_embedding(ids)
        x = x + self.positional_embedding[:ids.shape[1]]
        x = self.ln_final(self.transformer(x))
        return x[torch.arange(ids.shape[0]), ids.argmax(-1)] @ \
            self.text_projection

    def forward(self, image, ids):
        return self.visual(image), self.encode_text(ids)


@pytest.fixture(scope='module')
def openai_files(tmp_path_factory):
    torch.manual_seed(0)
    model = OpenAIStyleCLIP().eval()
    root = tmp_path_factory.mktemp('openai_clip')
    sd_path = str(root / 'state_dict.pt')
    jit_path = str(root / 'ViT-tiny.pt')
    torch.save(model.state_dict(), sd_path)
    image = torch.randn(2, 3, RES, RES)
    ids = make_ids()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (image, ids), check_trace=False)
    traced.save(jit_path)
    return model, sd_path, jit_path


def make_ids():
    """SOT, random words, EOT (the largest id), then zero padding."""
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(3, CONTEXT, dtype=torch.long)
    for b, n in enumerate((3, 7, 12)):
        ids[b, 0] = VOCAB - 2
        ids[b, 1:n + 1] = torch.randint(1, VOCAB - 2, (n, ), generator=g)
        ids[b, n + 1] = VOCAB - 1
    return ids


def _hf_clip(path_or_sd):
    from transformers import CLIPModel
    config, state_dict = convert_openai_clip(path_or_sd)
    hf = CLIPModel(config).eval()
    missing, unexpected = hf.load_state_dict(state_dict, strict=False)
    assert [k for k in missing if not k.endswith('position_ids')] == []
    assert unexpected == []
    return config, hf


@pytest.mark.parametrize('which', ['state_dict', 'torchscript'])
def test_conversion_matches_reference(openai_files, which):
    model, sd_path, jit_path = openai_files
    path = sd_path if which == 'state_dict' else jit_path
    config, hf = _hf_clip(path)
    vc, tc = config.vision_config, config.text_config
    assert (vc.hidden_size, vc.num_hidden_layers, vc.patch_size,
            vc.image_size, vc.num_attention_heads) == (WIDTH, 2, PATCH, RES,
                                                       WIDTH // 64)
    assert (tc.hidden_size, tc.num_hidden_layers, tc.vocab_size,
            tc.max_position_embeddings, tc.num_attention_heads) == (
                WIDTH, 2, VOCAB, CONTEXT, WIDTH // 64)
    assert config.projection_dim == EMBED
    assert vc.hidden_act == tc.hidden_act == 'quick_gelu'
    image = torch.randn(2, 3, RES, RES)
    ids = make_ids()
    with torch.no_grad():
        ref_img, ref_txt = model(image, ids)
        img = hf.visual_projection(hf.vision_model(pixel_values=image)
                                   .pooler_output)
        txt = hf.text_projection(hf.text_model(input_ids=ids).pooler_output)
    assert (img - ref_img).abs().max() < 1e-4
    assert (txt - ref_txt).abs().max() < 1e-4
    assert torch.allclose(hf.logit_scale, model.logit_scale)


def test_is_openai_checkpoint_and_errors(openai_files, tmp_path):
    model = openai_files[0]
    assert is_openai_clip_checkpoint(model.state_dict())
    bad = tmp_path / 'bad.pt'
    torch.save({'foo.weight': torch.zeros(2)}, str(bad))
    with pytest.raises(ValueError, match='not an OpenAI CLIP'):
        convert_openai_clip(str(bad))
    with pytest.raises(FileNotFoundError):
        convert_openai_clip(str(tmp_path / 'missing.pt'))
    sd = dict(model.state_dict())
    sd.pop('visual.proj')
    with pytest.raises(ValueError, match='visual.proj'):
        convert_openai_clip(sd)


def test_wrappers_load_openai_pt(openai_files):
    model, _, jit_path = openai_files
    enc = CLIPTextEncoder(pretrained=jit_path, max_length=17).eval()
    assert enc.embed_dim == EMBED
    texts = ['the red ball on the left', 'a cat']
    ids = enc.tokenize(texts)['input_ids']
    with torch.no_grad():
        feats = enc(texts)
        ref = model.encode_text(ids)
    assert (feats.sentence - ref).abs().max() < 1e-4

    backbone = CLIPVisionBackbone(pretrained=jit_path, out_indices=(0, 1),
                                  adapter=None).eval()
    image = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        grids = backbone(image)
        ref_tokens = model.visual.tokens(image)
    g = RES // PATCH
    ref_grid = ref_tokens[:, 1:].transpose(1, 2).reshape(1, WIDTH, g, g)
    assert grids[1].shape == (1, WIDTH, g, g)
    assert (grids[1] - ref_grid).abs().max() < 1e-4


def test_wrappers_load_hf_clip_folder(tmp_path):
    """A full CLIPModel saved with save_pretrained feeds both wrappers."""
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    hf = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16))
    hf.save_pretrained(str(tmp_path))
    enc = CLIPTextEncoder(pretrained=str(tmp_path))
    assert enc.embed_dim == 16
    assert torch.equal(enc.model.text_projection.weight,
                       hf.text_projection.weight)
    backbone = CLIPVisionBackbone(pretrained=str(tmp_path), out_indices=(1, ))
    assert torch.equal(backbone.encoder.pre_layrnorm.weight,
                       hf.vision_model.pre_layrnorm.weight)
    assert backbone.out_channels == [32]


def test_openai_torchscript_through_a_config(openai_files):
    """OpenAI's TorchScript archive as ``pretrained`` of both encoders of a
    shipped config: the segmentor builds from the config and trains a
    step."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    _, _, jit_path = openai_files
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, 'configs', 'sera',
                                   'sera_tiny_synthetic.py'))
    cfg.model.text_encoder.pretrained = jit_path
    cfg.model.backbone.pretrained = jit_path
    cfg.model.backbone.out_indices = (0, 1)  # the archive has 2 blocks
    cfg.model.backbone.adapter_indices = (1, )
    cfg.model.data_preprocessor.size = (RES, RES)
    register_all_modules()
    model = MODELS.build(cfg.model).train()
    assert model.text_encoder.embed_dim == EMBED
    samples = []
    for text in ('the red ball on the left', 'a cat'):
        s = SegDataSample(metainfo=dict(text=text, img_shape=(RES, RES),
                                        pad_shape=(RES, RES),
                                        ori_shape=(RES, RES)))
        s.gt_sem_seg = PixelData(data=torch.ones(1, RES, RES,
                                                 dtype=torch.long))
        samples.append(s)
    losses = model.loss(torch.randn(2, 3, RES, RES), samples)
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    assert torch.isfinite(total)
    total.backward()
