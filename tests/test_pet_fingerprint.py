"""The PET base-weight check: cheap fingerprints with a tolerance, and
entries added to the model since the checkpoint are not compared (format-1
checkpoints: tests/test_checkpoint_upgrade.py)."""
import pytest
import torch
import torch.nn as nn

from sera_mm.engine.pet_checkpoint import (CheckpointMismatchError,
                                           check_base_digest,
                                           compare_fingerprints,
                                           state_fingerprint)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.frozen = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)
        self.frozen.requires_grad_(False)


def _meta(net, **kw):
    state = net.state_dict()
    omitted = [k for k in state if not k.startswith('head.')]
    return {k: v for k, v in state.items() if k.startswith('head.')}, dict(
        base_fingerprint=state_fingerprint(state, omitted), **kw)


def test_same_weights_up_to_rounding_pass_and_changed_ones_fail():
    net = _Net()
    pet_state, meta = _meta(net)
    assert check_base_digest(net, pet_state, meta)
    with torch.no_grad():  # float rounding (as a converted copy has)
        net.frozen.weight.mul_(1 + 1e-7)
    assert check_base_digest(net, pet_state, meta)
    with torch.no_grad():
        net.frozen.weight[0, 0] += 1.0
    with pytest.raises(CheckpointMismatchError,
                       match=r"1 of 2 frozen tensors differ.*frozen.weight"
                       r".*--check-base warn"):
        check_base_digest(net, pet_state, meta)
    with pytest.warns(UserWarning, match='frozen weights differ'):
        assert not check_base_digest(net, pet_state, meta, mode='warn')
    assert check_base_digest(net, pet_state, meta, mode='ignore')


def test_entries_added_since_are_not_compared_but_missing_ones_are():
    net = _Net()
    pet_state, meta = _meta(net)
    net.register_buffer('new_buffer', torch.ones(3))
    assert check_base_digest(net, pet_state, meta)
    del net.frozen
    with pytest.raises(CheckpointMismatchError, match='not in the model'):
        check_base_digest(net, pet_state, meta)


def test_fingerprints_compare_shape_dtype_and_sums():
    a = {'w': torch.ones(2, 3), 'i': torch.arange(4)}
    fa = state_fingerprint(a, a)
    assert fa['w'] == [[2, 3], 'torch.float32', 6.0, 6.0]
    assert compare_fingerprints(fa, fa) == []
    b = dict(a, w=torch.ones(3, 2))
    assert compare_fingerprints(fa, state_fingerprint(b, b)) == [
        "w (shape/dtype [2, 3] torch.float32 vs [3, 2] torch.float32)"]
    c = dict(a, i=torch.arange(4) + 1)
    assert compare_fingerprints(fa, state_fingerprint(c, c)) == ['i']


class _Wide(nn.Module):
    """Two top-level parts with many numbered modules, as a neck and head."""

    def __init__(self, width: int):
        super().__init__()
        self.neck = nn.ModuleList(nn.Linear(width, width) for _ in range(6))
        self.head = nn.ModuleList(nn.Linear(width, width) for _ in range(6))


def test_mismatch_message_is_bounded_and_names_every_part():
    from sera_mm.engine.pet_checkpoint import (MAX_KEYS_SHOWN,
                                               check_state_fits_model)
    wide, narrow = _Wide(8), _Wide(4)
    # the right shapes pass
    check_state_fits_model(narrow, narrow.state_dict(), partial=False)
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_fits_model(narrow, wide.state_dict(), partial=False,
                               source='checkpoint "wide.pth"')
    message = str(info.value)
    assert message.startswith('checkpoint "wide.pth" does not fit the model '
                              '_Wide (is it a checkpoint of another config?)')
    assert '24 shape mismatches' in message
    named = [k for k in wide.state_dict() if f'{k}: checkpoint' in message]
    assert len(named) == MAX_KEYS_SHOWN
    assert f'({24 - MAX_KEYS_SHOWN} more)' in message
    # both parts are named, and the modules before keys of the same module
    assert any(k.startswith('neck.') for k in named)
    assert any(k.startswith('head.') for k in named)
    assert len({k.rsplit('.', 1)[0] for k in named}) == MAX_KEYS_SHOWN
    assert 'head.0.bias: checkpoint (8,) vs model (4,)' in message
    # few problems: every one named, no count left out
    state = narrow.state_dict()
    state['head.0.weight'] = torch.zeros(8, 4)
    state['extra.bias'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_fits_model(narrow, state, partial=False)
    message = str(info.value)
    assert '1 keys not in the model: extra.bias' in message
    assert '1 shape mismatches: head.0.weight: checkpoint (8, 4)' in message
    assert 'more)' not in message
    # many entries of one module: the first ones in order fill the list
    state = dict(narrow.state_dict(),
                 **{f'extra.w{i}': torch.zeros(1) for i in range(10)})
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_fits_model(narrow, state, partial=False)
    message = str(info.value)
    assert '10 keys not in the model: ' + ', '.join(
        f'extra.w{i}' for i in range(MAX_KEYS_SHOWN)) + (
            f', ... ({10 - MAX_KEYS_SHOWN} more)') in message
