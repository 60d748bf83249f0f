"""Checkpoints of earlier releases: the loader refuses them with the
command that converts them, and the converter
(tools/model_converters/upgrade_checkpoint.py) gives checkpoints that load
and predict exactly what the old ones did."""
import importlib.util
import os.path as osp
import re

import pytest
import torch
from mmcv.cnn import ConvModule

from sera_mm.apis import init_model
from sera_mm.engine.checkpoint_upgrade import (conv_block_key_map,
                                               upgrade_checkpoint)
from sera_mm.engine.pet_checkpoint import (CheckpointMismatchError,
                                           load_checkpoint_any,
                                           make_pet_checkpoint_state,
                                           read_checkpoint, state_digest)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(ROOT, 'configs', 'sera', 'sera_tiny_synthetic.py')


def _tool():
    path = osp.join(ROOT, 'tools', 'model_converters',
                    'upgrade_checkpoint.py')
    spec = importlib.util.spec_from_file_location('upgrade_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _old_layout(state):
    """The state dict as releases before mmcv ConvModules stored it: a
    block was nn.Sequential(conv, norm, act) (``0.`` conv, ``1.`` norm),
    except the head's upsampling blocks, nn.Sequential(Upsample, conv,
    norm, act) (``1.`` conv, ``2.`` norm)."""
    out = {}
    for key, value in state.items():
        up = re.match(r'(decode_head\.upsample\.\d+)\.1\.(conv|gn)\.(.+)$',
                      key)
        if up:
            slot = '1' if up.group(2) == 'conv' else '2'
            out[f'{up.group(1)}.{slot}.{up.group(3)}'] = value
            continue
        key = re.sub(r'\.conv\.(weight|bias)$', r'.0.\1', key)
        key = re.sub(r'\.gn\.(weight|bias)$', r'.1.\1', key)
        out[key] = value
    return out


def _build():
    """The tiny model; its random frozen weights are the same every time."""
    torch.manual_seed(0)
    return init_model(TINY)


@pytest.fixture(scope='module')
def trained():
    model = _build()
    with torch.no_grad():  # weights unlike a fresh init
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    return model


def _logits(model):
    torch.manual_seed(1)
    img = torch.rand(2, 3, 64, 64)
    texts = [dict(text='the red circle'), dict(text='the small square')]
    with torch.no_grad():
        return model.decode_head.forward(model.extract_feat(img, texts))


def test_conv_blocks_are_mmcv_conv_modules(trained):
    blocks = [n for n, m in trained.named_modules()
              if isinstance(m, ConvModule)]
    assert 'neck.laterals.0' in blocks and 'decode_head.input_proj' in blocks
    assert 'decode_head.upsample.0.1' in blocks
    state = trained.state_dict()
    assert 'neck.laterals.0.gn.weight' in state
    assert 'neck.laterals.0.conv.bias' not in state  # no bias before a norm


def test_old_full_checkpoint_is_refused_then_upgraded(trained):
    old = {'state_dict': _old_layout(trained.state_dict()), 'meta': {}}
    fresh = _build()
    with pytest.raises(CheckpointMismatchError,
                       match=r'earlier release.*upgrade_checkpoint\.py'):
        load_checkpoint_any(fresh, old)
    mapping = conv_block_key_map(fresh, old['state_dict'])
    assert mapping['neck.laterals.0.0.weight'] == \
        'neck.laterals.0.conv.weight'
    assert mapping['decode_head.upsample.0.2.weight'] == \
        'decode_head.upsample.0.1.gn.weight'
    new, changes = upgrade_checkpoint(old, fresh)
    assert changes and 'renamed' in changes[0]
    assert set(new['state_dict']) == set(trained.state_dict())
    load_checkpoint_any(fresh, new)
    assert torch.equal(_logits(fresh), _logits(trained))
    # an up-to-date checkpoint is left as it is
    again, none = upgrade_checkpoint(new, fresh)
    assert none == [] and set(again['state_dict']) == set(new['state_dict'])


def test_pet_format_1_is_refused_then_upgraded(trained):
    state = trained.state_dict()
    pet_state, meta = make_pet_checkpoint_state(trained, state)
    omitted = [k for k in state if k not in pet_state]
    old_meta = {k: v for k, v in meta.items() if k != 'base_fingerprint'}
    old_meta.update(format_version=1,
                    base_digest=state_digest(state, omitted),
                    trainable_keys=list(_old_layout(
                        {k: None for k in meta['trainable_keys']})))
    old = {'state_dict': _old_layout(pet_state), 'meta': {'pet': old_meta}}
    fresh = _build()
    with pytest.raises(CheckpointMismatchError, match='upgrade_checkpoint'):
        load_checkpoint_any(fresh, old)
    # the current key names with a format-1 digest: refused the same way
    with pytest.raises(CheckpointMismatchError,
                       match=r'PET format 1.*upgrade_checkpoint'):
        load_checkpoint_any(fresh, {'state_dict': pet_state,
                                    'meta': {'pet': old_meta}})
    new, changes = upgrade_checkpoint(old, fresh)
    assert any('format 1 -> 2' in c for c in changes)
    pet = new['meta']['pet']
    assert pet['format_version'] == 2 and 'base_digest' not in pet
    assert set(pet['base_fingerprint']) == set(omitted)
    assert pet['trainable_keys'] == meta['trainable_keys']
    load_checkpoint_any(fresh, new)
    assert torch.equal(_logits(fresh), _logits(trained))
    # frozen weights other than those of the digest: refused
    other = _build()
    with torch.no_grad():
        other.backbone.encoder.embeddings.patch_embedding.weight.add_(1.0)
    with pytest.raises(CheckpointMismatchError, match='base digest'):
        upgrade_checkpoint(old, other)


def test_tool_writes_a_new_file_and_keeps_the_input(trained, tmp_path):
    src = tmp_path / 'old.pth'
    torch.save({'state_dict': _old_layout(trained.state_dict()),
                'meta': {}}, src)
    before = src.read_bytes()
    dst = tmp_path / 'new.pth'
    tool = _tool()
    changes = tool.main([TINY, str(src), str(dst)])
    assert changes and src.read_bytes() == before
    model = init_model(TINY, str(dst))
    assert torch.equal(_logits(model), _logits(trained))
    with pytest.raises(FileExistsError, match='--force'):
        tool.main([TINY, str(src), str(dst)])
    assert read_checkpoint(str(dst))['state_dict'].keys() == \
        trained.state_dict().keys()
