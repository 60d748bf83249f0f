"""The package's import rule: model parts import layers and structures,
never each other; shared layers import no part; no model module imports
the data pipeline. Also the guide's promise that adding an expert is one
file plus one config line."""
import ast
import glob
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PKG = osp.join(ROOT, 'sera_mm')
PARTS = ('adapters', 'backbones', 'heads', 'losses', 'necks', 'segmentors',
         'text_encoders')
SHARED = ('layers', 'routers', 'utils')


def _imports(path):
    """Absolute module names a file imports (relative ones resolved)."""
    rel = osp.relpath(path, ROOT)[:-3].replace(osp.sep, '.')
    package = rel.rsplit('.', 1)[0] if not rel.endswith('__init__') else \
        rel[:-len('.__init__')]
    names = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                mod = '.'.join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ''
            names.append(mod)
            # ``from sera_mm.models import adapters`` style
            names += [f'{mod}.{a.name}' for a in node.names]
    return names


def _owner(module):
    """('part', name) / ('shared', name) of a sera_mm.models module."""
    parts = module.split('.')
    if len(parts) >= 3 and parts[:2] == ['sera_mm', 'models']:
        if parts[2] in PARTS:
            return 'part', parts[2]
        if parts[2] in SHARED:
            return 'shared', parts[2]
    return None, None


def _files(sub):
    return sorted(glob.glob(osp.join(PKG, 'models', sub, '**', '*.py'),
                            recursive=True))


def test_parts_import_layers_and_structures_never_each_other():
    bad = []
    for part in PARTS:
        for path in _files(part):
            for mod in _imports(path):
                kind, name = _owner(mod)
                if kind == 'part' and name != part:
                    bad.append(f'{osp.relpath(path, ROOT)} imports {mod}')
                if mod.startswith(('sera_mm.datasets', 'sera_mm.engine',
                                   'sera_mm.evaluation',
                                   'sera_mm.visualization',
                                   'sera_mm.deployment')):
                    bad.append(f'{osp.relpath(path, ROOT)} imports {mod}')
    assert not bad, '\n'.join(bad)


def test_shared_layers_import_no_part():
    bad = []
    for sub in SHARED:
        for path in _files(sub):
            for mod in _imports(path):
                if _owner(mod)[0] == 'part':
                    bad.append(f'{osp.relpath(path, ROOT)} imports {mod}')
    for path in glob.glob(osp.join(PKG, 'structures', '*.py')):
        for mod in _imports(path):
            if mod.startswith('sera_mm.') and not mod.startswith(
                    'sera_mm.structures'):
                bad.append(f'{osp.relpath(path, ROOT)} imports {mod}')
    assert not bad, '\n'.join(bad)


def test_the_rule_checker_sees_a_violation(tmp_path):
    fake = tmp_path / 'x.py'
    fake.write_text('from sera_mm.models.adapters.experts import foo\n'
                    'from ..necks import bar\n')
    names = _imports(str(fake))
    assert 'sera_mm.models.adapters.experts' in names
    assert _owner('sera_mm.models.adapters.experts') == ('part', 'adapters')
    assert _owner('sera_mm.models.layers.grid') == ('shared', 'layers')


def test_the_add_expert_guide_example_builds_and_trains(tmp_path,
                                                         monkeypatch):
    """The guide's expert (one file) and config (one line per owner) build
    a model whose routers mix the new expert, and one step trains it."""
    import re
    import sys

    import torch
    from mmengine.config import Config

    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    from sera_mm.utils.config_utils import random_init_cfg
    guide = open(osp.join(ROOT, 'docs', 'en', 'advanced_guides',
                          'add_expert.md')).read()
    blocks = re.findall(r'```python\n(.*?)```', guide, flags=re.S)
    module_src = next(b for b in blocks if 'class LargeKernelExpert' in b)
    config_src = next(b for b in blocks if "'my_experts'" in b)
    (tmp_path / 'my_experts.py').write_text(module_src)
    cfg_dir = tmp_path / 'configs' / 'sera'
    cfg_dir.mkdir(parents=True)
    tiny = osp.join(ROOT, 'configs', 'sera', 'sera_tiny_synthetic.py')
    (cfg_dir / 'sera_tiny_synthetic.py').write_text(f'_base_ = [{tiny!r}]\n')
    (cfg_dir / 'my_expert.py').write_text(config_src)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop('my_experts', None)
    register_all_modules()
    cfg = Config.fromfile(str(cfg_dir / 'my_expert.py'))
    __import__('my_experts')
    torch.manual_seed(0)
    model = MODELS.build(random_init_cfg(cfg.model, force=True))
    adapter = next(iter(model.backbone.adapters.values()))
    assert adapter.router.num_experts == 5
    assert 'large_kernel' in adapter.expert_names
    assert model.neck.routers[0].num_experts == 6
    feats = torch.randn(2, 3, 64, 64)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for text in ('the left circle', 'a square'):
        s = SegDataSample(metainfo=dict(text=text, img_shape=(64, 64),
                                        pad_shape=(64, 64),
                                        ori_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.ones(1, 64, 64,
                                                 dtype=torch.long))
        samples.append(s)
    losses = model.loss(feats, samples)
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    total.backward()
    lk = [m for m in model.modules() if type(m).__name__ ==
          'LargeKernelExpert']
    assert len(lk) >= 2
    assert any(p.grad is not None for m in lk for p in m.parameters())
