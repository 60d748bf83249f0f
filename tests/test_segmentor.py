"""SERASegmentor with small stand-in encoders, backbone and neck."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.models.routers import ExpertRouter  # noqa: E402
from sera_mm.models.segmentors import SERASegmentor  # noqa: E402
from sera_mm.structures import TextFeatures  # noqa
from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402

register_all_modules()


@MODELS.register_module(force=True)
class _SegTestTextEncoder(nn.Module):
    """Characters -> embeddings; L = max_length, sentence = masked mean."""

    def __init__(self, embed_dim: int = 8, max_length: int = 6) -> None:
        super().__init__()
        self.embed_dim, self.max_length = embed_dim, max_length
        self.embed = nn.Embedding(128, embed_dim)

    def forward(self, texts):
        ids = torch.zeros(len(texts), self.max_length, dtype=torch.long)
        pad = torch.ones(len(texts), self.max_length, dtype=torch.bool)
        for i, t in enumerate(texts):
            codes = [ord(c) % 128 for c in t[:self.max_length]]
            ids[i, :len(codes)] = torch.tensor(codes)
            pad[i, :len(codes)] = False
        words = self.embed(ids)
        keep = (~pad).float()[..., None]
        sentence = (words * keep).sum(1) / keep.sum(1).clamp(min=1)
        return TextFeatures(words, pad, sentence)


@MODELS.register_module(force=True)
class _SegTestBackbone(nn.Module):
    """Two conv levels (strides 4, 8) and one ExpertRouter."""

    def __init__(self, text_channels: int) -> None:
        super().__init__()
        self.text_channels = text_channels
        self.conv1 = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.router = ExpertRouter(8, text_channels, 3, hidden_channels=8)
        self.router.expert_names = ['a', 'b', 'c']
        self.out_channels = [8, 16]

    def forward(self, img, text):
        x1 = F.relu(self.conv1(img))
        w = self.router(x1, text.sentence)  # (B, 3)
        x1 = x1 * (1 + w[:, :1, None, None])
        return [x1, F.relu(self.conv2(x1))]


@MODELS.register_module(force=True)
class _SegTestNeck(nn.Module):

    def __init__(self, in_channels, text_channels, channels=12):
        super().__init__()
        self.in_channels, self.channels = list(in_channels), channels
        self.laterals = nn.ModuleList(
            [nn.Conv2d(c, channels, 1) for c in in_channels])
        self.text = nn.Linear(text_channels, channels)
        self.routers = nn.ModuleList(
            [ExpertRouter(channels, text_channels, 2, hidden_channels=8)])

    def forward(self, feats, text):
        size = feats[0].shape[2:]
        out = sum(
            F.interpolate(l(f), size=size, mode='bilinear')
            for l, f in zip(self.laterals, feats))
        w = self.routers[0](out, text.sentence)
        out = out * (1 + w[:, :1, None, None])
        return out + self.text(text.sentence)[:, :, None, None]


def _model(**kw):
    cfg = dict(
        type='SERASegmentor',
        text_encoder=dict(type='_SegTestTextEncoder', embed_dim=8),
        backbone=dict(type='_SegTestBackbone'),
        neck=dict(type='_SegTestNeck', channels=12),
        decode_head=dict(
            type='SERAHead', channels=8, num_layers=1, num_heads=2,
            ffn_channels=16, dropout=0.0),
        data_preprocessor=dict(type='SegDataPreProcessor', pad_val=0,
                               seg_pad_val=0, size=(32, 32)))
    cfg.update(kw)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def _samples(texts, size=32, ori=(24, 48), pad=(0, 0, 0, 16)):
    out = []
    for i, t in enumerate(texts):
        s = SegDataSample()
        s.set_metainfo(dict(text=t, sent_id=100 + i, ori_shape=ori,
                            img_shape=(size - pad[3], size),
                            pad_shape=(size, size), img_padding_size=pad))
        m = torch.zeros(1, size, size, dtype=torch.long)
        m[:, 4:12, 4 + 8 * i:12 + 8 * i] = 1
        s.gt_sem_seg = PixelData(data=m)
        out.append(s)
    return out


def test_channels_are_injected():
    model = _model()
    assert isinstance(model, SERASegmentor)
    assert model.backbone.text_channels == 8
    assert model.neck.in_channels == [8, 16]
    assert model.decode_head.in_channels == 12
    assert model.decode_head.text_channels == 8
    assert model.out_channels == 1 and model.num_classes == 2


def test_loss_keys_and_balance_weight():
    model = _model(balance_loss_weight=0.5).train()
    losses = model.loss(torch.randn(2, 3, 32, 32),
                        _samples(['left dog', 'red car']))
    assert {'loss_ce', 'loss_dice', 'acc_seg', 'loss_balance'} <= set(losses)
    routers = [m for m in model.modules() if isinstance(m, ExpertRouter)]
    assert len(routers) == 2
    expected = 0.5 * torch.stack([r.balance_loss() for r in routers]).mean()
    assert torch.allclose(losses['loss_balance'], expected)
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    total.backward()
    assert model.backbone.router.fc_out.weight.grad.abs().sum() > 0

    no_bal = _model(balance_loss_weight=0.0)
    assert 'loss_balance' not in no_bal.loss(
        torch.randn(2, 3, 32, 32), _samples(['a', 'b']))


def test_text_errors_name_the_sample():
    model = _model()
    img = torch.randn(2, 3, 32, 32)
    samples = _samples(['a dog', '  '])
    with pytest.raises(ValueError, match=r'sample 1 \(sent_id=101\)'):
        model.loss(img, samples)
    samples = _samples(['a dog', 'b'])
    del samples[1].text
    with pytest.raises(ValueError, match='sample 1'):
        model.predict(img, samples)
    with pytest.raises(ValueError, match='3 texts for a batch of 2'):
        model.loss(img, _samples(['a', 'b', 'c']))
    with pytest.raises(ValueError, match='text'):
        model.predict(img, None)


def test_predict_undoes_letterbox_and_reports_routing():
    model = _model().eval()
    img = torch.randn(2, 3, 32, 32)
    samples = _samples(['the left one', 'the right one'])
    metas = [s.metainfo for s in samples]
    with torch.no_grad():
        padded = model.encode_decode(img, metas)  # (2, 1, 32, 32)
        results = model.predict(img, samples)
    assert padded.shape == (2, 1, 32, 32)
    for i, r in enumerate(results):
        ref = F.interpolate(padded[i:i + 1, :, :16, :], size=(24, 48),
                            mode='bilinear', align_corners=False)[0]
        assert r.seg_logits.data.shape == (1, 24, 48)
        assert torch.allclose(r.seg_logits.data, ref, atol=1e-5)
        pred = r.pred_sem_seg.data
        assert torch.equal(pred, (ref.sigmoid() > 0.35).long())
        routing = r.routing
        assert set(routing) == {'backbone.router', 'neck.routers.0'}
        assert routing['backbone.router']['experts'] == ['a', 'b', 'c']
        for entry in routing.values():
            assert all(type(w) is float for w in entry['weights'])
            assert sum(entry['weights']) == pytest.approx(1.0, abs=1e-5)
    # per-sample routing: the two texts differ
    assert results[0].routing['backbone.router']['weights'] != \
        results[1].routing['backbone.router']['weights']


def test_forward_modes_through_data_preprocessor():
    model = _model()
    samples = _samples(['a', 'b'])
    data = dict(inputs=[torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
                        for _ in range(2)], data_samples=samples)
    data = model.data_preprocessor(data, training=True)
    losses = model(**data, mode='loss')
    assert 'loss_ce' in losses
    logits = model(**data, mode='tensor')
    assert logits.shape == (2, 1, 32, 32)  # 4x the stride-4 grid


def test_slide_mode_is_rejected():
    with pytest.raises(ValueError, match='whole'):
        _model(test_cfg=dict(mode='slide', crop_size=(8, 8), stride=(4, 4)))


def test_channels_last_option_same_loss_and_gradients():
    """SERASegmentor(channels_last=True) runs the image path in NHWC and
    gives the loss and gradients of the default layout up to rounding."""
    import copy
    import os.path as osp
    import sys

    from mmengine.config import Config

    from sera_mm.registry import MODELS
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    sys.path.insert(0, osp.join(root, 'tools', 'analysis'))
    from benchmark.subjects import synthetic_batch
    cfg = Config.fromfile(osp.join(
        root, 'configs', 'sera',
        'sera_mnv2-minilm_synthetic.py')).model.to_dict()
    # random weights: the test needs the geometry, not the pretrained ones
    cfg['backbone']['pretrained'] = None
    cfg['text_encoder']['pretrained'] = None
    torch.manual_seed(0)
    a = MODELS.build(copy.deepcopy(cfg))
    b_cfg = copy.deepcopy(cfg)
    b_cfg['channels_last'] = True
    b = MODELS.build(b_cfg)
    b.load_state_dict(a.state_dict())
    # eval: no dropout, whose masks follow the memory layout
    a.eval()
    b.eval()
    data = a.data_preprocessor(synthetic_batch(2, 64, with_gt=True), True)
    seen = []
    hook = b.backbone.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(
            memory_format=torch.channels_last)))
    losses = {}
    for key, model in (('a', a), ('b', b)):
        out = model.loss(data['inputs'].clone(), data['data_samples'])
        total = sum(v for k, v in out.items() if 'loss' in k)
        total.backward()
        losses[key] = float(total.detach())
    hook.remove()
    assert seen == [True]
    assert losses['a'] == pytest.approx(losses['b'], rel=1e-4, abs=1e-5)
    grads_a = dict((n, p.grad) for n, p in a.named_parameters()
                   if p.grad is not None)
    for name, p in b.named_parameters():
        if p.grad is None:
            continue
        # summation order differs between layouts: compare at the scale of
        # each gradient tensor
        scale = float(grads_a[name].abs().max()) + 1e-8
        diff = float((p.grad - grads_a[name]).abs().max())
        assert diff <= 5e-3 * scale, (name, diff, scale)


def test_routing_losses_and_metainfo_come_from_the_forward_that_made_them(
        monkeypatch):
    """A second forward between the features and the loss (an EMA teacher,
    test-time augmentation, a recomputation) leaves the step's routing
    losses and the predictions' routing metainfo unchanged."""
    from mmengine.config import Config
    from sera_mm.utils.config_utils import random_init_cfg
    import os.path as osp
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, 'configs', 'sera',
                                   'sera_tiny_synthetic.py'))
    torch.manual_seed(0)
    model = MODELS.build(random_init_cfg(cfg.model, force=True)).eval()
    model.aux_loss_weights.update(z=1.0, assign=1.0)
    size = 64
    samples = []
    for i in range(2):
        s = SegDataSample(metainfo=dict(
            text=['the left circle', 'a big red square'][i],
            img_shape=(size, size), ori_shape=(size, size),
            pad_shape=(size, size), img_padding_size=[0, 0, 0, 0]))
        s.gt_sem_seg = PixelData(
            data=torch.zeros(1, size, size, dtype=torch.long))
        samples.append(s)
    inputs = torch.randn(2, 3, size, size)
    other = torch.randn(2, 3, size, size) * 3
    with torch.no_grad():
        clean = model.loss(inputs, samples)
        expected = model.predict(inputs, samples)[0].metainfo['routing']
    head_loss = model.decode_head.loss

    def loss_after_another_forward(*args, **kwargs):
        model.extract_feat(other, samples)  # overwrites module state
        return head_loss(*args, **kwargs)

    monkeypatch.setattr(model.decode_head, 'loss', loss_after_another_forward)
    head_predict = model.decode_head.predict

    def predict_after_another_forward(*args, **kwargs):
        model.extract_feat(other, samples)
        return head_predict(*args, **kwargs)

    monkeypatch.setattr(model.decode_head, 'predict',
                        predict_after_another_forward)
    with torch.no_grad():
        again = model.loss(inputs, samples)
        routing = model.predict(inputs, samples)[0].metainfo['routing']
    for key in ('loss_balance', 'loss_z', 'loss_assign'):
        torch.testing.assert_close(again[key], clean[key])
    assert routing.keys() == expected.keys()
    for name in routing:
        assert routing[name]['weights'] == pytest.approx(
            expected[name]['weights'])


def test_loss_without_masks_names_the_fix():
    """A sample without its mask (e.g. a refer_collate batch that bypassed
    ReferDataPreProcessor) stops with an error that says what to set."""
    from sera_mm.datasets import refer_collate
    model = _model().train()
    samples = _samples(['left dog', 'red car'])
    batch = refer_collate([
        dict(inputs=torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8),
             data_samples=s) for s in samples])
    assert batch['gt_sem_seg'].shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"data_samples\[0\] has no "
                       r"gt_sem_seg.*ReferDataPreProcessor"):
        model.loss(torch.randn(2, 3, 32, 32), batch['data_samples'])
    # the same batch through the model's own preprocessor trains
    rebuilt = _model(data_preprocessor=dict(
        type='ReferDataPreProcessor', pad_val=0, seg_pad_val=0,
        size=(32, 32)))
    data = rebuilt.data_preprocessor(batch, training=True)
    assert 'loss_ce' in rebuilt(**data, mode='loss')
