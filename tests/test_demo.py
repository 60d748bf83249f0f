"""The web demo (tools/demo/app.py): its request handler, its start-up
refusal of a checkpoint that does not fit, and the page driven in a real
headless Chromium (Selenium) against the demo running in a subprocess on
the tiny config with a checkpoint made here. The browser test saves a
screenshot (copied to docs/images/demo.png with SERA_UPDATE_DOCS=1)."""
import importlib.util
import io
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch

from sera_mm.apis import inference_model, init_model
from sera_mm.datasets.synthetic import sample_scene
from sera_mm.utils.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
TINY_CFG = str(REPO / 'configs' / 'sera' / 'sera_tiny_synthetic.py')
SCREENSHOT = REPO / 'docs' / 'images' / 'demo.png'
CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
INSTALL_HINT = ('apt-get update && apt-get install -y chromium '
                'chromium-driver, and pip install -e .[demo]')
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-quic', '--no-first-run',
                  '--disable-background-networking',
                  '--disable-component-update', '--disable-sync',
                  '--window-size=1400,1000')
#: image uploaded in the browser: 120 wide, 80 high (not square, so the
#: size check would catch a letterboxed or resized overlay)
IMAGE_HW = (80, 120)


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        'sera_tool_demo_app', REPO / 'tools' / 'demo' / 'app.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = _load_app()


def _scene_bgr(h: int, w: int) -> np.ndarray:
    scene = sample_scene(np.random.default_rng(4), image_size=max(h, w),
                         background='plain')
    return np.ascontiguousarray(scene.image[:h, :w, ::-1])


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """The tiny random-init model, its dynamic-conv bias shifted so that
    masks cover part of the image, saved as a full checkpoint."""
    root = tmp_path_factory.mktemp('demo')
    torch.manual_seed(0)
    model = init_model(TINY_CFG)
    sample = inference_model(model, _scene_bgr(*IMAGE_HW),
                             ['the red shape'])[0]
    t = model.decode_head.threshold
    with torch.no_grad():
        model.decode_head.kernel_gen.bias[-1] += math.log(t / (1 - t)) - \
            float(sample.seg_logits.data.median())
    ckpt = str(root / 'tiny.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    image = str(root / 'scene.png')
    cv2.imwrite(image, _scene_bgr(*IMAGE_HW))
    return dict(root=root, ckpt=ckpt, model=model, image=image)


# ------------------------------------------------------------ handler
def test_backend_segments_and_zips(tiny, tmp_path):
    backend = app.DemoBackend(tiny['model'], work_root=str(tmp_path))
    overlays, masks, charts, zip_path, status = backend(
        tiny['image'], 'the red shape\n\n  the largest shape  \n')
    assert len(overlays) == len(masks) == len(charts) == 2
    h, w = IMAGE_HW
    for picture, caption in overlays:
        assert picture.shape == (h, w, 3) and picture.dtype == np.uint8
    assert overlays[1][1].startswith('"the largest shape"')
    assert set(np.unique(masks[0][0])) <= {0, 255}
    assert charts[0][0].ndim == 3
    assert status.startswith('2 expression(s) on a 120x80 image')
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == [
            'predictions.json', 'scene_0_mask.png', 'scene_0_overlay.png',
            'scene_1_mask.png', 'scene_1_overlay.png']
        mask = cv2.imdecode(np.frombuffer(zf.read('scene_0_mask.png'),
                                          np.uint8), 0)
    assert mask.shape == (h, w)


def test_backend_messages_for_bad_input(tiny, tmp_path):
    backend = app.DemoBackend(tiny['model'], max_expressions=3,
                              work_root=str(tmp_path))
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'this is not an image')
    cases = (
        ((tiny['image'], ''), 'expression box is empty'),
        ((tiny['image'], ' \n \n'), 'expression box is empty'),
        ((None, 'the cat'), 'Upload an image'),
        ((str(broken), 'the cat'), 'image unreadable'),
        ((tiny['image'], 'a\nb\nc\nd'), 'at most 3'),
    )
    for inputs, expected in cases:
        overlays, masks, charts, zip_path, status = backend(*inputs)
        assert status.startswith('**Error:**') and expected in status, status
        assert overlays == masks == charts == [] and zip_path is None


def test_demo_refuses_a_checkpoint_of_another_config(tiny):
    err = io.StringIO()
    with pytest.raises(SystemExit) as info:
        run_cli(app.main, [
            TINY_CFG, tiny['ckpt'], '--cfg-options',
            'model.backbone.adapter.hidden_channels=8'], stderr=err)
    assert info.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:'), lines
    assert 'shape mismatch' in lines[0]


def test_examples_are_written(tmp_path):
    examples = app.write_examples(str(tmp_path))
    names = [Path(p).name for p, _ in examples]
    assert {'astronaut.png', 'coffee.png', 'chelsea.png'} <= set(names)
    assert sum(n.startswith('synthetic_scene_') for n in names) == 2
    for path, texts in examples:
        assert cv2.imread(path) is not None and texts.strip()


# ------------------------------------------------------------ browser
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _browser_missing() -> str:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER)
               if not os.access(p, os.X_OK)]
    if missing:
        return f'{", ".join(missing)} not installed'
    for module in ('selenium', 'gradio'):
        if importlib.util.find_spec(module) is None:
            return f'python package {module} not installed'
    return ''


@pytest.fixture()
def demo_url(tiny, tmp_path):
    """The demo in a subprocess on a free port (skips without a browser,
    before starting anything)."""
    reason = _browser_missing()
    if reason:
        pytest.skip(f'{reason}: {INSTALL_HINT}')
    port = _free_port()
    log = open(tmp_path / 'demo.log', 'w')
    proc = subprocess.Popen(
        [sys.executable, str(REPO / 'tools' / 'demo' / 'app.py'), TINY_CFG,
         tiny['ckpt'], '--host', '127.0.0.1', '--port', str(port),
         '--threads', '1', '--examples-dir', str(tmp_path / 'examples'),
         '--work-dir', str(tmp_path / 'work')],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path),
        env=dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1',
                 GRADIO_ANALYTICS_ENABLED='False', no_proxy='*'))
    url = f'http://127.0.0.1:{port}/'
    deadline = time.time() + 45
    try:
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail('the demo exited early:\n' +
                            (tmp_path / 'demo.log').read_text()[-3000:])
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail('the demo did not answer within 45 s:\n' +
                            (tmp_path / 'demo.log').read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_demo_in_headless_chromium(tiny, demo_url, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix='chromium_', dir=str(tmp_path))
    for flag in CHROMIUM_FLAGS + (f'--user-data-dir={profile}', ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(demo_url)
        upload = wait.until(lambda d: d.find_elements(
            By.CSS_SELECTOR, '#input-image input[type=file]'))[0]
        upload.send_keys(tiny['image'])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR,
                                             '#input-image img'))
        box = driver.find_element(By.CSS_SELECTOR, '#expressions textarea')
        box.send_keys('the red shape\nthe largest shape')
        driver.find_element(By.CSS_SELECTOR, '#segment').click()

        def overlays_loaded(d):
            sizes = [d.execute_script(
                'return [arguments[0].complete, arguments[0].naturalWidth, '
                'arguments[0].naturalHeight]', img)
                for img in d.find_elements(By.CSS_SELECTOR, '#overlays img')]
            ok = len(sizes) >= 2 and all(s[0] and s[1] for s in sizes)
            return sizes if ok else False

        sizes = wait.until(overlays_loaded)
        h, w = IMAGE_HW
        assert [tuple(s[1:]) for s in sizes] == [(w, h), (w, h)], sizes
        status = driver.find_element(By.CSS_SELECTOR, '#status').text
        assert '2 expression(s) on a 120x80 image' in status, status
        assert len(driver.find_elements(By.CSS_SELECTOR, '#masks img')) == 2
        assert len(driver.find_elements(By.CSS_SELECTOR,
                                        '#routing img')) == 2
        links = [a.get_attribute('href') for a in driver.find_elements(
            By.CSS_SELECTOR, '#download a')]
        assert any(str(href).endswith('scene_masks.zip') for href in links)
        height = driver.execute_script(
            'return document.documentElement.scrollHeight')
        driver.set_window_size(1400, min(max(int(height), 900), 2400))
        shot = tmp_path / 'demo.png'
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        if os.environ.get('SERA_UPDATE_DOCS') == '1':  # refresh the docs
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
    finally:
        driver.quit()


def test_a_synthetic_model_gets_synthetic_examples_only(tmp_path):
    examples = app.write_examples(str(tmp_path), synthetic_model=True)
    names = [Path(p).name for p, _ in examples]
    assert names and all(n.startswith('synthetic_scene_') for n in names)


def test_models_say_what_they_were_trained_on(tiny):
    """Without a record in the checkpoint, init_model takes the training
    data from the config; the note warns about synthetic-only models."""
    from sera_mm.apis import init_model
    from sera_mm.engine.training_data import training_data_note
    model = init_model(TINY_CFG, tiny['ckpt'])
    assert model.trained_on['source'] == 'config'
    assert model.trained_on['synthetic'] is True
    note = training_data_note(model.trained_on)
    assert 'synthetic' in note and 'photographs' in note
    assert 'not recorded' in training_data_note(None)
