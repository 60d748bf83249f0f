"""One image path: the dataset, inference, the saved pictures and the
visualisation hook decode and convert images the same way, inference runs
the unmodified test pipeline, and the pictures come from one registered
visualizer."""
import ast
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mmengine.config import Config
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

from sera_mm.datasets.transforms import LoadReferImage
from sera_mm.utils.image_io import (ImageDecodeError, as_bgr_uint8,
                                    decode_image, load_image, read_image)

REPO = Path(__file__).resolve().parents[1]
TINY_CFG = str(REPO / 'configs' / 'sera' / 'sera_tiny_synthetic.py')


@pytest.fixture(scope='module')
def tiny_model():
    from sera_mm.apis import init_model
    torch.manual_seed(0)
    return init_model(TINY_CFG)


def _exif_jpeg(path: Path, orientation: int = 6) -> np.ndarray:
    """A 40x24 (H x W) JPEG whose EXIF says "rotate 90 degrees" (tag 6);
    returns the stored pixels as BGR."""
    PIL = pytest.importorskip('PIL.Image')
    rgb = np.zeros((40, 24, 3), np.uint8)
    rgb[:10] = (255, 0, 0)  # a red band on top of the stored pixels
    image = PIL.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(str(path), exif=exif.tobytes(), quality=95)
    return cv2.imdecode(np.fromfile(str(path), np.uint8),
                        cv2.IMREAD_UNCHANGED)


# ------------------------------------------------------------ one decode
def test_exif_orientation_is_ignored_everywhere(tmp_path, tiny_model):
    """The documented policy: pixels as stored. OpenCV's colour read would
    rotate this image to 24x40; the dataset, inference and the hook all
    see the stored 40x24 pixels (where COCO-style masks are drawn)."""
    path = tmp_path / 'rotated.jpg'
    stored = _exif_jpeg(path)
    assert cv2.imread(str(path), cv2.IMREAD_COLOR).shape[:2] == (24, 40)
    dataset = LoadReferImage()(dict(img_path=str(path)))['img']
    api, got_path = load_image(str(path))
    assert dataset.shape == api.shape == (40, 24, 3)
    np.testing.assert_array_equal(dataset, stored)
    np.testing.assert_array_equal(api, stored)
    assert got_path == str(path)

    from sera_mm.apis import inference_model
    (sample, ) = inference_model(tiny_model, str(path), 'the red band')
    assert tuple(sample.pred_sem_seg.data.shape) == (1, 40, 24)

    from sera_mm.engine.hooks import ReferVisualizationHook
    hook = ReferVisualizationHook()
    np.testing.assert_array_equal(
        hook._read_image(dict(img_path=str(path)), None), stored)


def test_sixteen_bit_and_modes_convert_alike(tmp_path):
    """A 16-bit file, the same array given in memory to the dataset
    transform and to the inference loader: one result (high byte)."""
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16)
    path = tmp_path / 'deep.png'
    assert cv2.imwrite(str(path), deep)
    expected = (deep >> 8).astype(np.uint8)
    from_file = LoadReferImage()(dict(img_path=str(path)))['img']
    given = LoadReferImage()(dict(img=deep, img_path='given'))['img']
    api_file, _ = load_image(str(path))
    api_array, _ = load_image(deep)
    for got in (from_file, given, api_file, api_array, read_image(path)):
        np.testing.assert_array_equal(got, expected)
    gray = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    bgra = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(as_bgr_uint8(gray),
                                  np.repeat(gray[..., None], 3, 2))
    np.testing.assert_array_equal(as_bgr_uint8(bgra), bgra[..., :3])


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.int32])
def test_other_dtypes_are_refused_by_every_caller(tiny_model, dtype):
    """Before: the dataset clipped float images to [0, 255] and inference
    refused them; now both refuse, naming the input and the dtypes
    expected."""
    array = np.full((6, 6, 3), 0.5, dtype)
    with pytest.raises(ValueError, match=r'given\.png.*uint8, uint16 or '
                       'bool.*' + np.dtype(dtype).name):
        LoadReferImage()(dict(img=array, img_path='given.png'))
    from sera_mm.apis import inference_model
    with pytest.raises(ValueError, match='uint8, uint16 or bool'):
        inference_model(tiny_model, array, 'the dog')


def test_decode_errors_name_the_input():
    with pytest.raises(ImageDecodeError, match=r'empty file.*x\.png'):
        decode_image(b'', 'x.png')
    with pytest.raises(ImageDecodeError, match=r'not an image.*y\.png'):
        decode_image(b'garbage', 'y.png')
    with pytest.raises(FileNotFoundError, match='missing.png'):
        read_image('missing.png')
    with pytest.raises(TypeError, match='path, a numpy array or a PIL'):
        load_image(42)


def test_pil_images_take_the_same_path():
    PIL = pytest.importorskip('PIL.Image')
    rgb = np.random.default_rng(1).integers(0, 256, (8, 5, 3), np.uint8)
    img, path = load_image(PIL.fromarray(rgb))
    np.testing.assert_array_equal(img, rgb[..., ::-1])
    assert path is None
    gray, _ = load_image(PIL.fromarray(rgb[..., 0]))
    np.testing.assert_array_equal(gray[..., 0], rgb[..., 0])
    # a 16-bit PIL image keeps its high byte, as its file does (not clipped)
    deep = np.random.default_rng(2).integers(0, 65536, (6, 4), np.uint16)
    image = PIL.fromarray(deep)
    assert image.mode == 'I;16'
    np.testing.assert_array_equal(load_image(image)[0],
                                  as_bgr_uint8(deep))


def test_bool_empty_and_path_inputs_take_the_same_path(tmp_path):
    """A bool image becomes {0, 255} for the dataset transform and the
    inference loader alike; an image without pixels is refused by both,
    naming the input; a pathlib.Path reads as its str path does and is
    returned as a str."""
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    expected = np.repeat(np.where(mask, 255, 0).astype(np.uint8)[..., None],
                         3, 2)
    given = LoadReferImage()(dict(img=mask, img_path='mask.png'))['img']
    api, api_path = load_image(mask)
    for got in (given, api, as_bgr_uint8(mask)):
        np.testing.assert_array_equal(got, expected)
    assert api_path is None
    empty = np.zeros((0, 5, 3), np.uint8)
    with pytest.raises(ValueError, match=r'empty\.png.*empty image'):
        LoadReferImage()(dict(img=empty, img_path='empty.png'))
    with pytest.raises(ValueError, match='empty image'):
        load_image(empty)
    path = tmp_path / 'caf\u00e9 sc\u00e8ne.png'
    stored = np.random.default_rng(5).integers(0, 256, (7, 9, 3), np.uint8)
    ok, buf = cv2.imencode('.png', stored)
    assert ok
    path.write_bytes(buf.tobytes())
    from_path, got_path = load_image(path)
    np.testing.assert_array_equal(from_path, stored)
    np.testing.assert_array_equal(read_image(str(path)), stored)
    assert got_path == str(path) and isinstance(got_path, str)
    dataset = LoadReferImage()(dict(img_path=str(path)))['img']
    np.testing.assert_array_equal(dataset, stored)


# ---------------------------------------------- unmodified test pipeline
def test_inference_runs_the_unmodified_test_pipeline(tiny_model):
    from sera_mm.apis import build_inference_pipeline
    cfg = Config.fromfile(TINY_CFG)
    pipeline = build_inference_pipeline(tiny_model)
    names = [type(t).__name__ for t in pipeline.transforms]
    expected = [t['type'] for t in cfg.test_dataloader.dataset.pipeline]
    assert names == expected and 'LoadReferImage' in names
    assert 'LoadReferMask' in names


def test_file_only_loaders_in_the_test_pipeline_are_a_clear_error(
        tiny_model):
    from sera_mm.apis import build_inference_pipeline, init_model
    cfg = Config.fromfile(TINY_CFG)
    pipeline = cfg.test_dataloader.dataset.pipeline
    pipeline[0] = dict(type='LoadImageFromFile')
    cfg.test_dataloader.dataset.pipeline = pipeline
    cfg.test_pipeline = pipeline  # what inference reads first
    model = init_model(cfg)
    with pytest.raises(KeyError, match=r"LoadImageFromFile.*file on disk.*"
                       'use LoadReferImage'):
        build_inference_pipeline(model)


def test_infer_tool_decodes_each_image_once(tmp_path, monkeypatch):
    """tools/infer.py decodes an image once and hands the same array to the
    model and to the pictures."""
    spec = importlib.util.spec_from_file_location(
        'infer_tool_once', str(REPO / 'tools' / 'infer.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    image = tmp_path / 'img.png'
    cv2.imwrite(str(image), np.full((20, 30, 3), 90, np.uint8))
    calls = []
    real = tool.load_image

    def counting(img, *args, **kwargs):
        calls.append(img)
        return real(img, *args, **kwargs)

    monkeypatch.setattr(tool, 'load_image', counting)
    seen = {}

    def fake_save(img, samples, out_dir, stem, image_name=None):
        seen['img'], seen['name'] = img, image_name
        return []

    def fake_infer(model, img, texts):
        seen['model_img'] = img
        return []

    monkeypatch.setattr(tool, 'save_predictions', fake_save)
    monkeypatch.setattr(tool, 'inference_model', fake_infer)
    monkeypatch.setattr(tool, 'init_model', lambda *a, **k: None)
    tool.main([TINY_CFG, 'none', '--image', str(image), '--text', 'x',
               '--out-dir', str(tmp_path / 'out')])
    assert calls == [str(image)]
    assert seen['img'] is seen['model_img'] and seen['name'] == str(image)


# ------------------------------------------------ registered visualizer
def _sample(shape=(20, 30)):
    sample = SegDataSample()
    gt = np.zeros(shape, np.int64)
    gt[5:15, 5:20] = 1
    pred = np.zeros(shape, np.int64)
    pred[6:15, 5:22] = 1
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
    sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
    sample.set_metainfo(dict(text='the box', sent_id=3, routing={
        'neck.router': dict(experts=['a', 'b'], weights=[0.7, 0.3])}))
    return sample


def test_visualizer_is_a_registered_seg_local_visualizer(tmp_path):
    from mmseg.visualization import SegLocalVisualizer

    from sera_mm.registry import VISUALIZERS
    from sera_mm.visualization import (ReferLocalVisualizer,
                                       compose_refer_panel)
    assert issubclass(ReferLocalVisualizer, SegLocalVisualizer)
    runtime = Config.fromfile(str(REPO / 'configs' / '_base_' /
                                  'default_runtime.py'))
    assert runtime.visualizer.type == 'ReferLocalVisualizer'
    vis = VISUALIZERS.build(dict(
        type='ReferLocalVisualizer', name='test_vis_registered',
        vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(tmp_path / 'backend')))
    assert isinstance(vis, ReferLocalVisualizer)
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
    sample = _sample()
    out_file = tmp_path / 'pic.png'
    picture = vis.add_datasample('pic', image[..., ::-1].copy(), sample,
                                 out_file=str(out_file))
    expected = compose_refer_panel(
        image, text='the box', gt_mask=sample.gt_sem_seg.data[0].numpy(),
        pred_mask=sample.pred_sem_seg.data[0].numpy(),
        routing=sample.routing)
    np.testing.assert_array_equal(picture, expected)
    np.testing.assert_array_equal(cv2.imread(str(out_file)), expected)
    # without out_file the picture goes to the backends (RGB)
    vis.add_datasample('to_backend', image[..., ::-1].copy(), sample, step=7)
    written = list((tmp_path / 'backend').rglob('to_backend_7.png'))
    assert len(written) == 1
    np.testing.assert_array_equal(cv2.imread(str(written[0])), expected)
    with pytest.raises(ValueError, match='router_mode'):
        ReferLocalVisualizer(name='bad_mode', router_mode='nope')


def test_hook_draws_through_the_visualizer(tmp_path):
    """The hook's picture is the visualizer's, written to the hook's
    folder and handed to the runner's backends."""
    from types import SimpleNamespace

    from sera_mm.engine.hooks import ReferVisualizationHook
    from sera_mm.visualization import ReferLocalVisualizer
    image = np.random.default_rng(3).integers(0, 256, (20, 30, 3), np.uint8)
    path = tmp_path / 'scene.png'
    cv2.imwrite(str(path), image)
    sample = _sample()
    sample.set_metainfo(dict(img_path=str(path)))
    calls = []
    vis = ReferLocalVisualizer(name='test_hook_vis')
    vis.add_image = lambda name, img, step=0: calls.append((name, img, step))
    runner = SimpleNamespace(work_dir=str(tmp_path), visualizer=vis,
                             iter=12, epoch=0, _train_loop=None)
    hook = ReferVisualizationHook(num_samples=1)
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, None, [sample])
    assert len(hook.written) == 1 and calls[0][2] == 12
    expected = vis.draw_refer_sample(image, sample)
    np.testing.assert_array_equal(cv2.imread(hook.written[0]), expected)
    np.testing.assert_array_equal(calls[0][1], expected[..., ::-1])
    # a runner with mmseg's visualizer: drawn by the hook's own, logged there
    from mmseg.visualization import SegLocalVisualizer
    other = SegLocalVisualizer(name='test_hook_seg_vis')
    logged = []
    other.add_image = lambda name, img, step=0: logged.append(img)
    runner.visualizer = other
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, None, [sample])
    np.testing.assert_array_equal(logged[0], expected[..., ::-1])


# ------------------------------------------------------- package layout
def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield ('.' * node.level) + (node.module or '')
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


def test_evaluation_and_visualization_do_not_import_the_engine():
    pkg = REPO / 'sera_mm'
    for folder in ('evaluation', 'visualization'):
        for path in (pkg / folder).glob('*.py'):
            bad = [m for m in _imports(path) if 'engine' in m.split('.')]
            assert not bad, f'{path.name} imports {bad}'


def test_segmentor_postprocess_is_undo_letterbox_then_flip():
    """The segmentor undoes the letterbox with the transforms' own
    ``undo_letterbox``; the result equals cropping, flipping and resizing
    in the former order."""
    import torch.nn.functional as F

    from sera_mm.datasets.transforms import undo_letterbox
    from sera_mm.models.segmentors.sera_segmentor import SERASegmentor
    logits = torch.randn(1, 1, 32, 32)
    pad = [0, 0, 4, 12]  # left, right, top, bottom
    meta = dict(img_padding_size=pad, ori_shape=(25, 50), flip=True,
                flip_direction='horizontal')
    sample = SegDataSample(metainfo=meta)
    holder = SERASegmentor.__new__(SERASegmentor)
    torch.nn.Module.__init__(holder)
    holder.decode_head = type('H', (), dict(threshold=0.5))()
    holder.align_corners = False
    (out, ) = SERASegmentor.postprocess_result(holder, logits, [sample])
    crop = logits[:, :, 4:32 - 12, :].flip(dims=(3, ))
    former = F.interpolate(crop, size=(25, 50), mode='bilinear',
                           align_corners=False)[0]
    torch.testing.assert_close(out.seg_logits.data, former)
    torch.testing.assert_close(
        undo_letterbox(logits[0], pad, (25, 50)).flip(dims=(2, )), former)


# ----------------------------------------------- init_model and --pairs
def test_init_model_names_the_config_in_its_errors(tmp_path):
    from sera_mm.apis import init_model
    from sera_mm.utils.config_utils import ConfigError
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(type=\n')
    with pytest.raises(ValueError, match=r'broken\.py.*not valid Python'):
        init_model(str(broken))
    misspelt = tmp_path / 'misspelt.py'
    misspelt.write_text(f'_base_ = [{TINY_CFG!r}]\n'
                        "model = dict(decode_head=dict(type='SERAHaed'))\n")
    with pytest.raises(ConfigError, match=r"misspelt\.py.*SERAHaed"):
        init_model(str(misspelt))
    no_model = tmp_path / 'no_model.py'
    no_model.write_text('x = 1\n')
    with pytest.raises(KeyError, match=r'no_model\.py.*no "model"'):
        init_model(str(no_model))


def test_init_model_names_a_mismatched_checkpoint(tmp_path):
    from sera_mm.apis import init_model
    ckpt = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'not.a.weight': torch.zeros(3)},
                    meta=dict()), str(ckpt))
    with pytest.raises(Exception, match=r'other\.pth'):
        init_model(TINY_CFG, str(ckpt))


@pytest.mark.parametrize('content,reason', [
    (b'[{"image": "a.png", "text": ', 'not valid JSON'),
    (b'\xff\xfe[not utf-8 \xe9]', 'not UTF-8'),
])
def test_bad_pairs_file_names_it(tmp_path, content, reason):
    from sera_mm.apis import collect_jobs
    pairs = tmp_path / 'pairs.json'
    pairs.write_bytes(content)
    with pytest.raises(ValueError, match=rf'pairs file .*pairs\.json: '
                       f'{reason}') as info:
        collect_jobs(pairs=str(pairs))
    assert '{"image", "text"}' in str(info.value)
    pairs.write_text(json.dumps([{'image': 'a.png', 'text': 'x'}]))
    with pytest.raises(FileNotFoundError, match='a.png'):
        collect_jobs(pairs=str(pairs))


def test_hook_pictures_reach_the_local_vis_backend(tmp_path):
    """The tag has no '/', so mmengine's LocalVisBackend (which writes
    <name>_<step>.png into one folder) saves the hook's pictures too."""
    from types import SimpleNamespace

    from sera_mm.engine.hooks import ReferVisualizationHook
    from sera_mm.visualization import ReferLocalVisualizer
    image = np.random.default_rng(4).integers(0, 256, (20, 30, 3), np.uint8)
    path = tmp_path / 'scene.png'
    cv2.imwrite(str(path), image)
    sample = _sample()
    sample.set_metainfo(dict(img_path=str(path)))
    vis = ReferLocalVisualizer(
        name='test_hook_local_backend',
        vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(tmp_path / 'backend'))
    runner = SimpleNamespace(work_dir=str(tmp_path), visualizer=vis,
                             iter=5, epoch=0, _train_loop=None)
    hook = ReferVisualizationHook(num_samples=1)
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, None, [sample])
    saved = list((tmp_path / 'backend').rglob('val_refer_00_sent3_5.png'))
    assert len(saved) == 1
    np.testing.assert_array_equal(cv2.imread(str(saved[0])),
                                  cv2.imread(hook.written[0]))
