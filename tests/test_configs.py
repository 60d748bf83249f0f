"""Every config under configs/ loads and its model builds offline (random
weights where the pretrained ones are not on this machine)."""
import glob
import os.path as osp

import pytest
import torch

from mmengine.config import Config  # noqa: E402

from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

register_all_modules()

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                           recursive=True))
TINY = osp.join(ROOT, 'configs', 'sera', 'sera_tiny_synthetic.py')
VITB_MODEL = osp.join(ROOT, 'configs', '_base_', 'models',
                      'sera_vitb16_clip.py')
_BUILT = {}


def _rel(path: str) -> str:
    """``path`` relative to the repository root, with ``/`` separators (so
    tests never look at the folders above the checkout)."""
    return osp.relpath(path, ROOT).replace(osp.sep, '/')


def _load(path):
    """Load a config; a missing ``_base_`` file is a failure, not a skip."""
    return Config.fromfile(path)


def _build(model_cfg):
    """Build (cached per distinct model config). An unregistered ``type=``
    raises (a misspelt type must fail the test)."""
    cfg = random_init_cfg(model_cfg)
    key = cfg.pretty_text if hasattr(cfg, 'pretty_text') else repr(cfg)
    if key not in _BUILT:
        _BUILT[key] = MODELS.build(cfg)
    return _BUILT[key]


def _param_report_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'param_report', osp.join(ROOT, 'tools', 'analysis', 'param_report.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_param_report_counts_by_hand(tmp_path):
    mod = _param_report_module()
    model = torch.nn.Module()
    model.text_encoder = torch.nn.Linear(4, 4)  # 20
    model.text_encoder.weight.requires_grad_(False)  # 16 frozen
    model.backbone = torch.nn.Module()
    model.backbone.encoder = torch.nn.Linear(10, 10)  # 110
    model.backbone.encoder.weight.requires_grad_(False)  # 100 frozen
    model.backbone.adapters = torch.nn.ModuleDict(
        {'1': torch.nn.Linear(2, 3)})  # 9
    model.decode_head = torch.nn.Linear(3, 1)  # 4
    r = mod.parameter_report(model)
    assert r['total'] == 20 + 110 + 9 + 4
    assert r['trainable'] == 4 + 10 + 9 + 4
    assert r['backbone']['adapters'] == 9
    assert r['backbone']['encoder_trainable'] == 10
    assert r['backbone_fraction'] == pytest.approx((4 + 10) / (20 + 110))
    text = mod.format_report(r, 'toy')
    assert '| backbone: adapters |' in text and '10.769%' in text
    out = tmp_path / 'r.md'
    mod.main([TINY, '--random-init', '--out', str(out)])
    assert out.read_text().startswith('# Parameters: sera_tiny_synthetic')


def test_configs_found():
    names = {_rel(p) for p in CONFIGS}
    assert 'configs/_base_/default_runtime.py' in names
    assert 'configs/sera/sera_tiny_synthetic.py' in names
    assert len([n for n in names if n.startswith('configs/sera/')]) >= 6


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[_rel(p) for p in CONFIGS])
def test_config_builds(path):
    cfg = _load(path)
    rel = _rel(path)
    if 'model' not in cfg:
        # runtime / schedule / dataset parts; every leaf config has a model
        assert rel.startswith('configs/_base_/') and \
            not rel.startswith('configs/_base_/models/'), \
            f'{rel}: a leaf or model config without a model'
        return
    if rel.startswith('configs/sera/'):
        assert cfg.default_scope == 'sera_mm'
        assert cfg.train_cfg.type in ('EpochBasedTrainLoop',
                                      'IterBasedTrainLoop')
    model = _build(cfg.model)
    assert model.out_channels == 1
    assert model.decode_head.text_channels == model.text_encoder.embed_dim
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert 0 < len(trainable) < len(list(model.parameters()))


def test_vitb_trains_under_one_percent_of_its_encoders():
    parameter_report = _param_report_module().parameter_report
    cfg = _load(VITB_MODEL)
    report = parameter_report(_build(cfg.model))
    assert report['encoder_total'] > 100e6  # CLIP ViT-B/16 + text
    assert report['backbone_fraction'] < 0.01
    assert report['backbone']['adapters'] > 0


@pytest.mark.parametrize('name,max_length', [
    ('sera_vitb_refcoco.py', 17), ('sera_vitb_refcoco+.py', 17),
    ('sera_vitb_refcocog-umd.py', 22), ('sera_vitb_refcocog-google.py', 22)])
def test_clip_text_length_per_dataset(name, max_length):
    """RefCOCOg's longer expressions get 22 CLIP tokens (as CRIS), RefCOCO
    and RefCOCO+ 17."""
    cfg = _load(osp.join(ROOT, 'configs', 'sera', name))
    assert cfg.model.text_encoder.type == 'CLIPTextEncoder'
    assert cfg.model.text_encoder.max_length == max_length


def test_tiny_config_trains_only_what_it_should():
    cfg = _load(TINY)
    assert cfg.train_cfg.max_iters == 4 and cfg.train_cfg.val_interval == 4
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.train_dataloader.num_workers == 0
    assert cfg.default_hooks.logger.interval == 1
    assert cfg.default_hooks.checkpoint.type == 'PETCheckpointHook'
    assert cfg.train_dataloader.dataset.generate.num_images == 24
    torch.manual_seed(0)
    model = MODELS.build(random_init_cfg(cfg.model)).train()

    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for i, text in enumerate(['the red circle left', 'a small blue square']):
        s = SegDataSample()
        s.set_metainfo(dict(text=text, sent_id=i, ori_shape=(64, 64),
                            img_shape=(64, 64), pad_shape=(64, 64),
                            img_padding_size=[0, 0, 0, 0]))
        m = torch.zeros(1, 64, 64, dtype=torch.long)
        m[:, 8 + 20 * i:30 + 20 * i, 10:40] = 1
        s.gt_sem_seg = PixelData(data=m)
        samples.append(s)
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                     for _ in range(2)], data_samples=samples), True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = model(**data, mode='loss')
    assert {'loss_ce', 'loss_dice', 'loss_balance'} <= set(losses)
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    assert torch.isfinite(total)
    total.backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters()
               if n.startswith('backbone.adapters'))
    opt.step()
    changed = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p.detach(), before[name]), name
        elif not torch.equal(p.detach(), before[name]):
            changed.add(name)
    assert any(n.startswith('decode_head.') for n in changed)
    assert any(n.startswith('neck.') for n in changed)
    assert any(n.startswith('backbone.adapters.') for n in changed)
    assert any(n.startswith('text_encoder.') for n in changed)  # norm/bias


def test_random_init_cfg_walks_and_copies():
    cfg = dict(a=dict(pretrained='no/such-hub-id', config=dict(x=1)),
               b=[dict(pretrained=None), dict(pretrained=ROOT)],
               pretrained='pkg:not_a_known_package')
    out = random_init_cfg(cfg)
    assert out['a']['pretrained'] is None and out['a']['config'] == {'x': 1}
    assert out['b'][1]['pretrained'] == ROOT  # exists locally: kept
    assert out['pretrained'] is None
    assert cfg['a']['pretrained'] == 'no/such-hub-id'  # input untouched
    assert random_init_cfg(cfg, force=True)['b'][1]['pretrained'] is None


# --------------------------------------------------------------------------
# the one input size
SHIPPED = sorted(
    set(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
        + glob.glob(osp.join(ROOT, 'projects', '*', 'configs', '*.py')))
    - set(glob.glob(osp.join(ROOT, 'configs', '_base_', '**', '*.py'),
                    recursive=True)))
MAIN = osp.join(ROOT, 'configs', 'sera', 'sera_mnv2-minilm_synthetic.py')


def _input_sizes(cfg):
    """Every place an input size is written: the Letterbox transforms of
    the three dataloaders and the top-level pipelines, and the data
    preprocessor's size."""
    found = []

    def walk(dataset, where):
        if not isinstance(dataset, dict):
            return
        for t in dataset.get('pipeline') or ():
            if t.get('type') == 'Letterbox':
                found.append((where, t['size']))
        walk(dataset.get('dataset'), where)
        for child in dataset.get('datasets') or ():
            walk(child, where)

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        walk((cfg.get(key) or {}).get('dataset'), key)
    for key in ('train_pipeline', 'test_pipeline'):
        walk(dict(pipeline=cfg.get(key)), key)
    size = cfg.model.get('data_preprocessor', {}).get('size')
    found.append(('data_preprocessor', tuple(size) if size else None))
    return found


@pytest.mark.parametrize('path', SHIPPED, ids=_rel)
def test_every_config_has_one_input_size(path):
    """Each shipped config has an ``input_size``, and as the tools load it
    (``load_config``) everything that depends on it agrees with it."""
    from sera_mm.engine.launch_utils import load_config
    cfg = load_config(path)
    size = cfg.get('input_size')
    assert isinstance(size, int), 'no input_size'
    sizes = _input_sizes(cfg)
    assert {s for k, s in sizes if k != 'data_preprocessor'} == {size}
    assert dict(sizes)['data_preprocessor'] in (None, (size, size))


def test_one_line_changes_the_input_size(tmp_path):
    from sera_mm.apis import init_model
    from sera_mm.engine.launch_utils import load_config
    leaf = tmp_path / 'leaf.py'
    leaf.write_text(f'_base_ = {MAIN!r}\ninput_size = 96\n')
    for cfg in (load_config(str(leaf)),
                load_config(MAIN, dict(input_size=96))):
        sizes = _input_sizes(cfg)
        assert {k for k, _ in sizes} >= {
            'train_dataloader', 'val_dataloader', 'test_dataloader',
            'data_preprocessor'}
        assert {s for k, s in sizes if k != 'data_preprocessor'} == {96}
        assert dict(sizes)['data_preprocessor'] == (96, 96)
    tiny = osp.join(ROOT, 'configs', 'sera', 'sera_tiny_synthetic.py')
    model = init_model(tiny, cfg_options=dict(input_size=32))
    assert tuple(model.cfg.model.data_preprocessor.size) == (32, 32)
    assert [t['size'] for t in model.cfg.test_pipeline
            if t['type'] == 'Letterbox'] == [32]
    bad = tmp_path / 'bad.py'
    bad.write_text(f'_base_ = {MAIN!r}\ninput_size = "160"\n')
    with pytest.raises(ValueError, match='input_size must be a positive '
                       "int.*got '160'"):
        load_config(str(bad))


@pytest.mark.parametrize('path', SHIPPED, ids=_rel)
def test_stacked_batches_meet_their_preprocessor(path):
    """A config whose dataloaders stack batches in the workers
    (``sera_mm.refer_collate``) gives its model the preprocessor that takes
    them; the main job's training batches are stacked."""
    from sera_mm.engine.launch_utils import load_config
    cfg = load_config(path)
    collates = {(cfg.get(k) or {}).get('collate_fn', {}).get('type')
                for k in ('train_dataloader', 'val_dataloader',
                          'test_dataloader')}
    preprocessor = cfg.model.get('data_preprocessor', {}).get('type')
    if 'sera_mm.refer_collate' in collates:
        assert preprocessor == 'ReferDataPreProcessor'
    if path == MAIN:
        assert cfg.train_dataloader.collate_fn.type == 'sera_mm.refer_collate'
