"""The plain-data unpickler the REFER refs files are read with: plain data
loads (python 3 at every protocol, python-2 byte strings), anything that
names a callable is refused before it runs."""
import os
import os.path as osp
import pickle

import pytest

from sera_mm.datasets import ReferDataset
from sera_mm.utils.safe_pickle import UnsafePickleError, load_plain_pickle

from test_refer_dataset import Py2Pickler, make_refer

REFS = [
    dict(ref_id=0, ann_id=10, image_id=1, split='train', category_id=1,
         file_name='COCO_train2014_000000000001_10.jpg', sent_ids=[0, 1],
         sentences=[dict(sent_id=0, sent='the man on the left',
                         raw='The man on the left.',
                         tokens=['the', 'man', 'on', 'the', 'left']),
                    dict(sent_id=1, sent='lft guy', raw='lft guy',
                         tokens=['lft', 'guy'])]),
    dict(ref_id=1, ann_id=11, image_id=2, split='val', category_id=2,
         file_name='b.jpg', sent_ids=[2], score=0.5, flag=True, none=None,
         tags=('a', 'b'), ids={3, 4}, frozen=frozenset({5}), raw=b'\x00\xff',
         empty=b'', big=2 ** 70,
         sentences=[dict(sent_id=2, sent='caf\u00e9', raw='caf\u00e9',
                         tokens=['caf\u00e9'])]),
]


class _Shell:
    """Unpickling this runs ``touch <target>`` with plain ``pickle``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f'touch {self.target}', ))


@pytest.mark.parametrize('protocol', [0, 2, pickle.HIGHEST_PROTOCOL])
def test_plain_refs_load(tmp_path, protocol):
    path = tmp_path / 'refs(unc).p'
    with open(path, 'wb') as f:
        pickle.dump(REFS, f, protocol=protocol)
    assert load_plain_pickle(str(path)) == REFS


def test_python2_byte_strings_load(tmp_path):
    path = tmp_path / 'refs(unc).p'
    refs = [dict(ref_id=0, sentences=[dict(sent='the caf\u00e9 cat')],
                 ids={1, 2})]
    with open(path, 'wb') as f:
        Py2Pickler(f, protocol=2).dump(refs)
    with pytest.raises(UnicodeDecodeError):  # as plain pickle.load does
        load_plain_pickle(str(path))
    raw = load_plain_pickle(str(path), encoding='bytes')
    assert raw[0][b'sentences'][0][b'sent'] == 'the caf\u00e9 cat'.encode()
    assert raw[0][b'ids'] == {1, 2}


def test_python2_builtin_module_name_is_allowed(tmp_path):
    # protocol 0 as python 2 writes a set: c__builtin__\nset
    path = tmp_path / 'py2_set.p'
    path.write_bytes(b'c__builtin__\nset\n((lp0\nI1\naI2\natp1\nRp2\n.')
    assert load_plain_pickle(str(path)) == {1, 2}


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    target = tmp_path / 'pwned'
    path = tmp_path / 'refs(unc).p'
    with open(path, 'wb') as f:
        pickle.dump([dict(ref_id=0, evil=_Shell(str(target)))], f,
                    protocol=2)
    with pytest.raises(UnsafePickleError) as info:
        load_plain_pickle(str(path))
    message = str(info.value)
    assert str(path) in message
    assert f'{os.system.__module__}.system' in message  # posix.system
    assert not target.exists()
    assert isinstance(info.value, pickle.UnpicklingError)
    # sanity: the file really is an exploit for an unrestricted load
    with open(path, 'rb') as f:
        pickle.load(f)
    assert target.exists()


@pytest.mark.parametrize('payload', [
    b'cos\nsystem\n(S"true"\ntR.',  # protocol 0 GLOBAL
    pickle.dumps(eval, protocol=4),  # STACK_GLOBAL builtins.eval
    pickle.dumps([getattr], protocol=2),  # a builtin outside the list
    b'(i__builtin__\nglobals\n.',  # INST
    b'c_codecs\nencode\n(S"x"\nS"rot13"\ntR.',  # codec outside latin-1
    b'\x80\x02X\x01\x00\x00\x00xQ.',  # a persistent id
])
def test_other_globals_are_refused(tmp_path, payload):
    """Every opcode that looks a global up goes through the allow-list."""
    path = tmp_path / 'bad.p'
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match='bad.p'):
        load_plain_pickle(str(path))


def test_dataset_refuses_a_malicious_refs_file(tmp_path):
    root = make_refer(str(tmp_path / 'refer'))
    target = tmp_path / 'pwned'
    with open(osp.join(root, 'refs(unc).p'), 'wb') as f:
        pickle.dump([_Shell(str(target))], f, protocol=2)
    with pytest.raises(UnsafePickleError, match=r'refs\(unc\)\.p') as info:
        ReferDataset(data_root=root, split_by='unc', split='train',
                     data_prefix=dict(img_path='images'), pipeline=[])
    assert f'{os.system.__module__}.system' in str(info.value)
    assert not target.exists()


@pytest.mark.parametrize('protocol', [2, pickle.HIGHEST_PROTOCOL])
def test_dataset_reads_plain_refs(tmp_path, protocol):
    root = make_refer(str(tmp_path / 'refer'))
    path = osp.join(root, 'refs(unc).p')
    with open(path, 'rb') as f:
        refs = pickle.load(f)
    with open(path, 'wb') as f:
        pickle.dump(refs, f, protocol=protocol)
    ds = ReferDataset(data_root=root, split_by='unc', split='train',
                      data_prefix=dict(img_path='images'), pipeline=[],
                      train_mode='sentence')
    assert sorted(ds[i]['text'] for i in range(len(ds))) == sorted(
        ['the left dog', 'dog on the left', 'big dog', 'small dog',
         'tiny dog'])


def test_dataset_reads_python2_refs(tmp_path):
    root = make_refer(str(tmp_path / 'refer'), py2=True)
    ds = ReferDataset(data_root=root, split_by='unc', split='val',
                      data_prefix=dict(img_path='images'), pipeline=[],
                      test_mode=True)
    assert [ds[i]['text'] for i in range(len(ds))] == ['the cat']
