"""Bad inputs and faults: each gets a clear error naming the input and what
was expected, or a documented behaviour; nothing already written is lost.

The table in ``docs/reliability.md`` lists every class tried and the test
that shows it (here or in the other test files).
"""
import glob
import importlib.util
import io
import itertools
import json
import os
import os.path as osp
import pickle
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import torch

from sera_mm.datasets.transforms import LoadReferImage, PackReferInputs
from sera_mm.engine import (CheckpointReadError, UnsafeCheckpointError,
                            atomic_torch_save, read_checkpoint)
from sera_mm.utils.cli import EXIT_BAD_INPUT, EXIT_RUNTIME_ERROR, run_cli
from sera_mm.utils.config_utils import ConfigError

from test_refer_dataset import Py2Pickler, build, make_refer

REPO = Path(__file__).resolve().parents[1]
TINY_CFG = str(REPO / 'configs' / 'sera' / 'sera_tiny_synthetic.py')
LOSS_KEYS = ('loss', 'loss_ce', 'loss_dice', 'loss_balance', 'lr')
_run_ids = itertools.count()


def _load_tool(name: str):
    """Import ``tools/<name>.py`` (the tools folder is not a package)."""
    path = REPO / 'tools' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(
        f'sera_reliability_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(tool: str, argv: List[str]):
    """Run a tool's ``main`` through ``run_cli`` in-process: ``(exit
    status, stderr)``; the status is None when it returned."""
    err = io.StringIO()
    try:
        run_cli(_load_tool(tool).main, argv, stderr=err)
    except SystemExit as exc:
        return exc.code, err.getvalue()
    return None, err.getvalue()


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), stderr
    return lines[0]


class _Shell:
    """Unpickling this runs ``touch <target>`` with an unrestricted load."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f'touch {self.target}', ))


# --------------------------------------------------------------------------
# dataset files: corrupt, truncated, not UTF-8
# --------------------------------------------------------------------------
@pytest.mark.parametrize('content',
                         ['garbage', 'truncated', 'empty', 'not_a_list'])
def test_unreadable_refs_file_names_it(tmp_path, content):
    make_refer(tmp_path)
    path = tmp_path / 'refs(unc).p'
    good = path.read_bytes()
    path.write_bytes({'garbage': b'this is not a pickle',
                      'truncated': good[:len(good) // 2],
                      'empty': b'',
                      'not_a_list': pickle.dumps({'refs': []})}[content])
    with pytest.raises(ValueError) as info:
        build(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert 'expected a pickled list of refs' in message
    if content == 'not_a_list':
        assert message.endswith('got dict')
    else:
        assert f'{path.stat().st_size} bytes' in message


@pytest.mark.parametrize('content', ['truncated', 'latin-1', 'not_object'])
def test_unreadable_instances_file_names_it(tmp_path, content):
    make_refer(tmp_path)
    path = tmp_path / 'instances.json'
    good = path.read_bytes()
    path.write_bytes({
        'truncated': good[:len(good) // 2],
        'latin-1': good.replace(b'"dog"', '"d\xe9g"'.encode('latin-1')),
        'not_object': b'[]'}[content])
    with pytest.raises(ValueError) as info:
        build(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert {'truncated': 'not valid JSON', 'latin-1': 'not UTF-8',
            'not_object': 'expected COCO keys'}[content] in message
    assert 'images' in message and 'annotations' in message


def test_unreadable_grefs_json_names_it(tmp_path):
    from test_grefer import _build as build_gref
    from test_grefer import make_grefer
    make_grefer(str(tmp_path), 'json')
    path = tmp_path / 'grefs(unc).json'
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match='not valid JSON') as info:
        build_gref(tmp_path)
    assert str(path) in str(info.value)
    assert 'expected a JSON list of refs' in str(info.value)


def _reads_without_permission(folder: Path) -> bool:
    """Whether this process opens files it has no read permission for
    (root with CAP_DAC_OVERRIDE: permissions cannot be tested; run e.g.
    ``setpriv --bounding-set -dac_override,-dac_read_search pytest ...``)."""
    probe = folder / 'permission_probe'
    probe.write_text('x')
    probe.chmod(0)
    try:
        with open(probe):
            return True
    except PermissionError:
        return False
    finally:
        probe.chmod(0o644)
        probe.unlink()


def test_files_without_read_permission_are_named(tmp_path):
    """Refs, instances, image, config and checkpoint files that exist but
    cannot be opened: ``PermissionError`` naming the file (one ``error:``
    line, exit status 2, from the tools), never "corrupt"."""
    if _reads_without_permission(tmp_path):
        # root reads anything: rerun this test in a child process without
        # the capabilities that bypass file permissions
        import shutil
        import subprocess
        import sys
        setpriv = shutil.which('setpriv')
        if setpriv is None or os.environ.get('SERA_DROPPED_DAC'):
            pytest.skip('this process reads files without read permission '
                        'and cannot drop that capability (no setpriv)')
        here = os.path.abspath(__file__)
        out = subprocess.run(
            [setpriv, '--bounding-set', '-dac_override,-dac_read_search',
             '--inh-caps', '-dac_override,-dac_read_search', sys.executable,
             '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
             f'{here}::test_files_without_read_permission_are_named'],
            capture_output=True, text=True, timeout=300,
            env=dict(os.environ, SERA_DROPPED_DAC='1'),
            cwd=os.path.dirname(os.path.dirname(here)))
        assert out.returncode == 0 and ' passed' in out.stdout, (
            out.stdout[-2000:] + out.stderr[-2000:])
        return
    from sera_mm.engine.launch_utils import load_config
    make_refer(tmp_path)
    config = tmp_path / 'cfg.py'
    config.write_text('x = 1\n')
    ckpt = tmp_path / 'ckpt.pth'
    atomic_torch_save({'state_dict': {'w': torch.ones(1)}}, str(ckpt))
    image = tmp_path / 'images' / 'a.png'
    checks = [
        (tmp_path / 'refs(unc).p', lambda: build(tmp_path)),
        (tmp_path / 'instances.json', lambda: build(tmp_path)),
        (image, lambda: LoadReferImage()(dict(img_path=str(image)))),
        (config, lambda: load_config(str(config))),
        (ckpt, lambda: read_checkpoint(str(ckpt))),
    ]
    for path, call in checks:
        path.chmod(0)
        try:
            with pytest.raises(PermissionError) as info:
                call()
        finally:
            path.chmod(0o644)
        assert str(path) in str(info.value), path


def test_ref_pointing_at_a_missing_image_names_it(tmp_path):
    make_refer(tmp_path)
    path = tmp_path / 'instances.json'
    coco = json.loads(path.read_text())
    coco['images'] = [i for i in coco['images'] if i['id'] != 2]
    path.write_text(json.dumps(coco))
    with pytest.raises(KeyError,
                       match=r'ref_id 1: image id 2 is not in .*instances'):
        build(tmp_path, split='val')


@pytest.mark.parametrize('text', ['', '   ', '\t\n'])
def test_empty_or_blank_expression_in_refs_names_it(tmp_path, text):
    make_refer(tmp_path)
    path = tmp_path / 'refs(unc).p'
    refs = pickle.loads(path.read_bytes())
    refs[0]['sentences'][1]['sent'] = text
    path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ValueError, match=r'ref_id 0: empty expression.*'
                       r'sent_id \[1\].*skip_empty'):
        build(tmp_path)
    ds = build(tmp_path, test_mode=True, skip_empty=True, pipeline=[])
    assert 1 not in {ds[i]['sent_id'] for i in range(len(ds))}


def test_non_utf8_python2_text_is_read_as_latin1(tmp_path):
    """Python-2 byte strings that are not UTF-8 (latin-1 ``caf\\xe9``) are
    decoded as latin-1, the documented fallback."""
    make_refer(tmp_path)
    path = tmp_path / 'refs(unc).p'
    refs = pickle.loads(path.read_bytes())

    class Latin1Pickler(Py2Pickler):
        dispatch = Py2Pickler.dispatch.copy()

        def save_str(self, obj):
            data = obj.encode('latin-1')
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
            self.memoize(obj)

        dispatch[str] = save_str

    refs[1]['sentences'][0]['sent'] = 'the caf\u00e9 cat'
    with open(path, 'wb') as f:
        Latin1Pickler(f, protocol=2).dump(refs)
    assert b'caf\xe9' in path.read_bytes()
    ds = build(tmp_path, split='val', test_mode=True, pipeline=[])
    assert ds[0]['text'] == 'the caf\u00e9 cat'


def test_undecodable_expression_in_refs_names_it(tmp_path):
    """A str with lone surrogates (bytes that were not UTF-8, kept with
    ``surrogateescape``) is refused at load, naming the ref and sentence;
    without the check the tokenizer fails mid-training with an unrelated
    TypeError."""
    make_refer(tmp_path)
    path = tmp_path / 'refs(unc).p'
    refs = pickle.loads(path.read_bytes())
    refs[0]['sentences'][2]['sent'] = b'big caf\xe9 dog'.decode(
        'utf-8', 'surrogateescape')
    path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ValueError) as info:
        build(tmp_path)
    message = str(info.value)
    assert 'ref_id 0, sent_id 2' in message and 'refs(unc).p' in message
    assert 'not valid Unicode' in message and 'expected UTF-8' in message


def test_pack_refuses_undecodable_text():
    res = dict(img=np.zeros((8, 8, 3), np.uint8), img_path='x.png',
               text=b'the caf\xe9'.decode('utf-8', 'surrogateescape'),
               ref_id=3, sent_id=7, ori_shape=(8, 8), img_shape=(8, 8))
    with pytest.raises(ValueError, match=r'sent_id 7.*not valid Unicode'):
        PackReferInputs()(res)
    assert PackReferInputs()(dict(res, text='the caf\u00e9'))[
        'data_samples'].text == 'the caf\u00e9'


# --------------------------------------------------------------------------
# images: zero-size, empty, truncated, corrupt
# --------------------------------------------------------------------------
def _png(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data + struct.pack(
            '>I', zlib.crc32(kind + data) & 0xffffffff))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack(
        '>IIBBBBB', width, height, 8, 0, 0, 0, 0)) +
        chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


@pytest.mark.parametrize('shape', [(0, 0, 3), (0, 5), (5, 0, 4), (0, 7, 1)])
def test_zero_size_image_array_is_refused(shape):
    with pytest.raises(ValueError) as info:
        LoadReferImage()(dict(img=np.zeros(shape, np.uint8),
                              img_path='given.png'))
    message = str(info.value)
    assert 'given.png' in message and str(shape) in message
    assert 'at least 1 pixel' in message


@pytest.mark.parametrize('kind', ['empty', 'zero_size_png', 'truncated_png',
                                  'truncated_jpg', 'garbage'])
def test_unreadable_image_file_names_it(tmp_path, kind):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    ext = '.jpg' if kind == 'truncated_jpg' else '.png'
    data = {'empty': b'', 'zero_size_png': _png(0, 0),
            'garbage': b'not an image at all'}.get(kind)
    if data is None:
        encoded = cv2.imencode(ext, image)[1].tobytes()
        data = encoded[:len(encoded) // 2]
    path = tmp_path / f'{kind}{ext}'
    path.write_bytes(data)
    with pytest.raises(FileNotFoundError, match='image unreadable') as info:
        LoadReferImage()(dict(img_path=str(path)))
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------
# inference: image modes and sizes, text
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_model():
    """The tiny config with random weights (no checkpoint needed to show
    how inputs are handled)."""
    from sera_mm.apis import init_model
    torch.manual_seed(0)
    return init_model(TINY_CFG)


def _predict(model, image, text='the red circle'):
    from sera_mm.apis import inference_model
    (sample, ) = inference_model(model, image, [text])
    return sample


@pytest.mark.parametrize('kind,shape', [
    ('gray', (30, 20)), ('rgba', (30, 20, 4)), ('uint16', (30, 20)),
    ('uint16_bgr', (30, 20, 3)), ('smaller_than_patch', (3, 5, 3)),
    ('one_pixel', (1, 1, 3)), ('one_row', (1, 200)), ('one_column', (200, 1))
])
def test_image_modes_and_sizes_are_predicted_at_their_own_size(
        tiny_model, tmp_path, kind, shape):
    """Grayscale and RGBA load as 3-channel BGR, 16-bit is scaled to 8
    bits, and images smaller than a patch (16 px here) or one pixel thin are
    letterboxed up: every prediction comes back at the image's own size."""
    rng = np.random.default_rng(0)
    dtype = np.uint16 if kind.startswith('uint16') else np.uint8
    array = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    path = tmp_path / f'{kind}.png'
    assert cv2.imwrite(str(path), array)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == shape
    loaded = LoadReferImage()(dict(img_path=str(path)))
    assert loaded['img'].shape == shape[:2] + (3, )
    assert loaded['img'].dtype == np.uint8
    if kind == 'gray':
        assert np.array_equal(loaded['img'][..., 0], array)
    if kind == 'uint16':
        assert np.array_equal(loaded['img'][..., 0], (array >> 8))
    for image in (str(path), array):
        sample = _predict(tiny_model, image)
        assert tuple(sample.pred_sem_seg.data.shape) == (1, ) + shape[:2]
        assert tuple(sample.seg_logits.data.shape) == (1, ) + shape[:2]
        assert set(sample.pred_sem_seg.data.unique().tolist()) <= {0, 1}
        assert bool(torch.isfinite(sample.seg_logits.data).all())


def test_over_long_expression_is_truncated_with_a_warning(tiny_model):
    """The documented behaviour: tokens beyond the encoder's max_length
    (17 for the tiny config) are cut, with one warning naming the limit."""
    import warnings
    tiny_model.text_encoder._warned_truncation = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        long_sample = _predict(tiny_model, np.zeros((32, 32, 3), np.uint8),
                               'the dog ' * 5000)
    messages = [str(w.message) for w in caught if 'truncated' in
                str(w.message)]
    assert len(messages) == 1 and 'max_length=17' in messages[0]
    assert tuple(long_sample.pred_sem_seg.data.shape) == (1, 32, 32)


def test_undecodable_expression_at_inference_is_a_clear_error(tiny_model):
    """``--text`` bytes that are not UTF-8 arrive as lone surrogates; the
    pipeline refuses them (before: the tokenizer raised ``TypeError:
    TextEncodeInput must be Union[...]``)."""
    text = b'the caf\xe9 dog'.decode('utf-8', 'surrogateescape')
    with pytest.raises(ValueError, match=r'sent_id 0.*not valid Unicode.*'
                       'expected UTF-8'):
        _predict(tiny_model, np.zeros((32, 32, 3), np.uint8), text)


# --------------------------------------------------------------------------
# configs: syntax errors, missing bases, misspelt types and arguments
# --------------------------------------------------------------------------
def _tool_opts(tag: str, root: str) -> List[str]:
    """``--cfg-options`` values for an in-process tool run: the data root
    (so that nothing is generated under the working directory, should a
    check not fire) and a unique experiment and visualizer name."""
    name = f'reliability_{tag}_{next(_run_ids)}'
    return [f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')] + [
        f'experiment_name={name}', f'visualizer.name={name}']


def test_config_syntax_error_names_the_file(tmp_path):
    broken = tmp_path / 'broken.py'
    broken.write_text(f'_base_ = [{TINY_CFG!r}]\nmodel = dict(\n')
    status, stderr = _cli('train', [str(broken)])
    assert status == EXIT_BAD_INPUT
    line = _one_error_line(stderr)
    assert str(broken) in line and 'not valid Python' in line
    assert 'line 2' in line
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = [{str(broken)!r}]\n')
    status, stderr = _cli('train', [str(child)])
    assert status == EXIT_BAD_INPUT
    assert 'a _base_ file that config' in _one_error_line(stderr)


@pytest.mark.parametrize('body,error', [
    ('x = undefined_name\n', "NameError: name 'undefined_name'"),
    ("custom_imports = dict(imports=['no_such_module_xyz'])\n",
     'no_such_module_xyz'),
])
def test_config_whose_code_fails_names_the_file(tmp_path, body, error):
    config = tmp_path / 'failing.py'
    config.write_text(body)
    status, stderr = _cli('train', [str(config)])
    assert status == EXIT_BAD_INPUT
    line = _one_error_line(stderr)
    assert f'config {config}: running it failed' in line and error in line


def test_config_missing_base_names_it(tmp_path):
    config = tmp_path / 'orphan.py'
    config.write_text("_base_ = ['../no_such_base.py']\n")
    status, stderr = _cli('train', [str(config)])
    assert status == EXIT_BAD_INPUT
    line = _one_error_line(stderr)
    assert str(config) in line and 'no_such_base.py' in line


def test_misspelt_type_names_the_entry_and_suggests(
        tmp_path, synthetic_tiny_root):
    status, stderr = _cli('train', [
        TINY_CFG, '--work-dir', str(tmp_path), '--cfg-options',
        'model.decode_head.type=SERAHaed',
        *_tool_opts('type', synthetic_tiny_root)])
    assert status == EXIT_BAD_INPUT
    line = _one_error_line(stderr)
    assert TINY_CFG in line and 'model.decode_head.type' in line
    assert "'SERAHaed'" in line and 'model registry' in line
    assert "did you mean 'SERAHead'" in line


@pytest.mark.parametrize('option,path,cls', [
    ('model.decode_head.chanels=8', 'model.decode_head.chanels', 'SERAHead'),
    ('train_cfg.max_iter=8', 'train_cfg.max_iter', 'IterBasedTrainLoop'),
])
def test_unknown_argument_names_the_entry(tmp_path, synthetic_tiny_root,
                                          option, path, cls):
    """Before: a ``TypeError`` traceback (``BaseDecodeHead.__init__() got
    an unexpected keyword argument 'chanels'``) naming neither the config
    nor the entry."""
    status, stderr = _cli('train', [
        TINY_CFG, '--work-dir', str(tmp_path), '--cfg-options', option,
        *_tool_opts('arg', synthetic_tiny_root)])
    assert status == EXIT_BAD_INPUT
    line = _one_error_line(stderr)
    assert TINY_CFG in line and f'{path} (type {cls})' in line
    assert 'unknown argument' in line and 'does not accept it' in line


def test_type_errors_of_code_are_not_relabelled():
    from sera_mm.utils.config_utils import config_errors
    cfg = dict(model=dict(type='X', channels=8))
    with pytest.raises(TypeError, match='unrelated'):
        with config_errors(cfg, 'c.py'):
            raise TypeError('unrelated bug')
    # an unexpected argument that is no key of the config: a code bug
    with pytest.raises(TypeError, match='colour'):
        with config_errors(cfg, 'c.py'):
            raise TypeError("f.__init__() got an unexpected keyword argument "
                            "'colour'")
    with pytest.raises(ConfigError, match=r'model\.channels \(type X\)'):
        with config_errors(cfg, 'c.py'):
            raise TypeError("X.__init__() got an unexpected keyword argument "
                            "'channels'")


# --------------------------------------------------------------------------
# checkpoints: malicious, truncated, resumed from
# --------------------------------------------------------------------------
def _malicious_checkpoint(tmp_path) -> tuple:
    target = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)},
                'meta': {'x': _Shell(str(target))}}, str(path))
    return path, target


def test_malicious_checkpoint_is_refused_and_never_runs(
        tmp_path, synthetic_tiny_root):
    from sera_mm.apis import init_model
    path, target = _malicious_checkpoint(tmp_path)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(str(path))
    message = str(info.value)
    assert str(path) in message and 'refused' in message
    assert f'{os.system.__module__}.system' in message  # posix.system
    assert 'weights_only` set to `False`' not in message  # no such advice
    assert isinstance(info.value, CheckpointReadError)
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        init_model(TINY_CFG, str(path))
    for tool, argv in (('test', [TINY_CFG, str(path)]),
                       ('train', [TINY_CFG, '--resume', str(path)])):
        status, stderr = _cli(tool, argv + [
            '--work-dir', str(tmp_path / tool), '--cfg-options',
            *_tool_opts('evil', synthetic_tiny_root)])
        assert status == EXIT_RUNTIME_ERROR, (tool, stderr)
        line = _one_error_line(stderr)
        assert str(path) in line and 'posix.system' in line, tool
    assert not target.exists()
    # sanity: the file really is an exploit for an unrestricted load
    torch.load(str(path), weights_only=False)
    assert target.exists()


def test_resume_from_truncated_checkpoint_names_it(
        tmp_path, synthetic_tiny_root):
    good = tmp_path / 'good.pth'
    atomic_torch_save({'state_dict': {'w': torch.arange(4.)}, 'meta': {}},
                      str(good))
    broken = tmp_path / 'work' / 'iter_4.pth'
    broken.parent.mkdir()
    data = good.read_bytes()
    broken.write_bytes(data[:len(data) // 2])
    # an explicit path, and the latest checkpoint of the work dir
    (tmp_path / 'work' / 'last_checkpoint').write_text(str(broken))
    for extra in (['--resume', str(broken)], ['--resume']):
        status, stderr = _cli('train', [
            TINY_CFG, '--work-dir', str(tmp_path / 'work'), *extra,
            '--cfg-options', *_tool_opts('trunc', synthetic_tiny_root)])
        assert status == EXIT_RUNTIME_ERROR, stderr
        line = _one_error_line(stderr)
        assert str(broken) in line and 'truncated' in line, extra
    status, stderr = _cli('train', [
        TINY_CFG, '--work-dir', str(tmp_path), '--resume',
        str(tmp_path / 'gone.pth'), '--cfg-options',
        *_tool_opts('gone', synthetic_tiny_root)])
    assert status == EXIT_BAD_INPUT
    assert 'gone.pth' in _one_error_line(stderr)


def test_checkpoint_of_another_config_or_base_is_refused(
        tmp_path, synthetic_tiny_root):
    """A PET checkpoint loads only into the model of its config and its
    frozen base weights: other keys (adapters on other blocks) are listed,
    and a model whose frozen weights differ (another seed, other pretrained
    weights) fails the base-digest check. Shape mismatches:
    tests/test_tools.py::test_checkpoint_of_other_config_is_refused."""
    from mmengine.config import Config
    from mmengine.runner import set_random_seed

    from sera_mm.apis import init_model
    from sera_mm.engine import CheckpointMismatchError
    from sera_mm.engine.pet_checkpoint import make_pet_checkpoint_state
    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(TINY_CFG)
    set_random_seed(0)  # how the Runner builds and initialises the model
    model = MODELS.build(cfg.model)
    model.init_weights()
    state, pet = make_pet_checkpoint_state(model, model.state_dict(),
                                           model_cfg=cfg.model)
    path = tmp_path / 'pet.pth'
    atomic_torch_save(dict(state_dict=state, meta=dict(pet=pet, seed=0)),
                      str(path))
    loaded = init_model(TINY_CFG, str(path))  # the right config and seed
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(CheckpointMismatchError) as info:
        init_model(TINY_CFG, str(path),
                   cfg_options={'model.backbone.adapter_indices': (3, )})
    message = str(info.value)
    assert 'another config' in message and 'keys not in the model' in message
    assert 'backbone.adapters.1.' in message
    # tools/test.py names the file
    status, stderr = _cli('test', [
        TINY_CFG, str(path), '--work-dir', str(tmp_path / 'work'),
        '--cfg-options', 'model.backbone.adapter_indices=[3]',
        *_tool_opts('other_cfg', synthetic_tiny_root)])
    assert status == EXIT_BAD_INPUT
    line = _one_error_line(stderr)
    assert f'checkpoint "{path}" does not fit' in line
    assert 'keys not in the model: backbone.adapters.1.' in line
    # and so does resuming from it
    status, stderr = _cli('train', [
        TINY_CFG, '--work-dir', str(tmp_path / 'resume'), '--resume',
        str(path), '--cfg-options', 'model.backbone.adapter_indices=[3]',
        *_tool_opts('other_cfg_resume', synthetic_tiny_root)])
    assert status == EXIT_BAD_INPUT
    line = _one_error_line(stderr)
    assert f'PET checkpoint "{path}" does not fit' in line
    assert 'backbone.adapters.1.' in line
    other_seed = tmp_path / 'pet_seed1.pth'
    atomic_torch_save(dict(state_dict=state, meta=dict(pet=pet, seed=1)),
                      str(other_seed))
    with pytest.raises(CheckpointMismatchError,
                       match="frozen weights differ.*frozen tensors "
                       "differ beyond rtol"):
        init_model(TINY_CFG, str(other_seed))


# --------------------------------------------------------------------------
# an interrupted save
# --------------------------------------------------------------------------
KILLED_SAVE = '''
import os, sys, time
import torch
from sera_mm.utils.file_io import atomic_torch_save

def stalled_save(obj, f, *args, **kwargs):
    f.write(b'PK partial checkpoint bytes')
    f.flush()
    open(sys.argv[2], 'w').close()
    time.sleep(600)

torch.save = stalled_save
atomic_torch_save({'state_dict': {'w': torch.zeros(6)}}, sys.argv[1])
'''


def test_save_killed_midway_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL during a checkpoint write (no exception handler runs): the
    previous file is untouched; only a hidden ``.<name>.*.tmp`` is left."""
    path = tmp_path / 'iter_4.pth'
    atomic_torch_save({'state_dict': {'w': torch.arange(6.)}}, str(path))
    good = path.read_bytes()
    marker = tmp_path / 'writing'
    proc = subprocess.Popen(
        [sys.executable, '-c', KILLED_SAVE, str(path), str(marker)],
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, 'the writer exited early'
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert path.read_bytes() == good
    assert torch.equal(read_checkpoint(str(path))['state_dict']['w'],
                       torch.arange(6.))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left[0].startswith('.iter_4.pth.') and left[0].endswith('.tmp')
    assert left[1:] == ['iter_4.pth', 'writing']


# --------------------------------------------------------------------------
# a training run killed with SIGKILL and resumed
# --------------------------------------------------------------------------
STALL_HOOK = '''
"""Test-only hook: with SERA_TEST_STALL_AT=N, stall before iteration N+1
(after iteration N's checkpoint, validation and logs are written) so that
the test can SIGKILL the run at a known point."""
import os
import time

from mmengine.hooks import Hook

from sera_mm.registry import HOOKS


@HOOKS.register_module()
class StallForKillHook(Hook):
    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        at = os.environ.get('SERA_TEST_STALL_AT')
        if at is not None and runner.iter == int(at):
            open(os.environ['SERA_TEST_STALL_MARKER'], 'w').close()
            time.sleep(600)
'''


def _train_cmd(config: str, work_dir: str, root: str,
               extra: List[str] = ()) -> List[str]:
    return [sys.executable, str(REPO / 'tools' / 'train.py'), config,
            '--work-dir', work_dir, *extra, '--cfg-options',
            *[f'{loader}.dataset.data_root={root}'
              for loader in ('train_dataloader', 'val_dataloader',
                             'test_dataloader')],
            'train_cfg.max_iters=8', 'train_cfg.val_interval=4',
            'default_hooks.checkpoint.interval=4',
            'default_hooks.checkpoint.max_keep_ckpts=3']


def _train_scalars(run_dir: str) -> Dict[int, dict]:
    """The training records of one run's ``vis_data/scalars.json`` by
    iteration."""
    by_iter = {}
    with open(osp.join(run_dir, 'vis_data', 'scalars.json')) as f:
        for line in f:
            record = json.loads(line)
            if 'loss' in record:
                by_iter[int(record['iter'])] = record
    return by_iter


def _run_dirs(work_dir: str) -> List[str]:
    """The per-launch ``<timestamp>`` folders of a work dir, oldest first."""
    return sorted(osp.dirname(osp.dirname(p)) for p in glob.glob(
        osp.join(work_dir, '*', 'vis_data', 'scalars.json')))


def test_sigkilled_run_resumes_with_the_same_losses(synthetic_tiny_root,
                                                    tmp_path):
    """Run A: 8 iterations straight, checkpoints at 4 and 8. Run B: the same,
    SIGKILLed during iteration 5 (after iter_4.pth is written), then
    ``--resume`` (latest checkpoint of the work dir). B's iterations 5-8 log
    the same losses and learning rates as A's, its final weights are A's,
    and the checkpoint written before the kill still loads."""
    (tmp_path / 'stall_hook.py').write_text(STALL_HOOK)
    config = tmp_path / 'tiny_killable.py'
    config.write_text(
        f'_base_ = [{TINY_CFG!r}]\n'
        "custom_imports = dict(imports=['stall_hook'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [dict(type='StallForKillHook')]\n")
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(
                   [str(tmp_path), os.environ.get('PYTHONPATH', '')]))
    env.pop('SERA_TEST_STALL_AT', None)
    root = synthetic_tiny_root

    def run(cmd, **kw):
        proc = subprocess.run(cmd, cwd=str(tmp_path), env=dict(env, **kw),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    work_a = str(tmp_path / 'run_a')
    run(_train_cmd(str(config), work_a, root))

    work_b = str(tmp_path / 'run_b')
    marker = tmp_path / 'stalled'
    ckpt4 = osp.join(work_b, 'iter_4.pth')
    log_b = open(tmp_path / 'run_b_killed.log', 'w')
    proc = subprocess.Popen(
        _train_cmd(str(config), work_b, root), cwd=str(tmp_path),
        env=dict(env, SERA_TEST_STALL_AT='4',
                 SERA_TEST_STALL_MARKER=str(marker)),
        stdout=log_b, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not (osp.isfile(ckpt4) and marker.exists()):
            assert proc.poll() is None, \
                (tmp_path / 'run_b_killed.log').read_text()[-3000:]
            assert time.monotonic() < deadline, 'run B never reached iter 4'
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_b.close()
    assert not osp.exists(osp.join(work_b, 'iter_8.pth'))
    with open(osp.join(work_b, 'last_checkpoint')) as f:
        assert f.read().strip() == ckpt4
    run(_train_cmd(str(config), work_b, root, ['--resume']))

    straight = _train_scalars(_run_dirs(work_a)[0])
    killed_dir, resumed_dir = _run_dirs(work_b)
    killed, resumed = _train_scalars(killed_dir), _train_scalars(resumed_dir)
    assert sorted(straight) == list(range(1, 9))
    # the model trains (the losses change), so equal losses mean something
    assert len({straight[it]['loss'] for it in range(5, 9)}) == 4
    assert sorted(killed) == [1, 2, 3, 4]
    assert sorted(resumed) == [5, 6, 7, 8], \
        'the resumed run re-trained iterations it should have skipped'
    for it, log in list(killed.items()) + list(resumed.items()):
        for key in LOSS_KEYS:
            assert log[key] == pytest.approx(
                straight[it][key], rel=0, abs=1e-6), (it, key)
    # the weights each run ends with are the same
    final_a = read_checkpoint(osp.join(work_a, 'iter_8.pth'))
    final_b = read_checkpoint(osp.join(work_b, 'iter_8.pth'))
    assert final_b['meta']['iter'] == 8
    assert set(final_a['state_dict']) == set(final_b['state_dict'])
    for key, value in final_a['state_dict'].items():
        assert (final_b['state_dict'][key] - value).abs().max() <= 1e-6, key
    # what was written before the kill is intact
    before = read_checkpoint(ckpt4)
    assert before['meta']['iter'] == 4 and before['state_dict']
    assert not glob.glob(osp.join(work_b, '.*.tmp'))
