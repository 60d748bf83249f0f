"""Web demo (Gradio): upload an image, type expressions (one per line), see
per expression the mask overlaid on the image, the mask alone and the
router's expert weights; download the masks as PNG (a zip that also holds
the overlays and ``predictions.json``, the files ``tools/infer.py`` writes).

Example (CPU, the published synthetic checkpoint)::

    python tools/demo/app.py configs/sera/sera_mnv2-minilm_synthetic_2h.py \
        checkpoints/sera_mnv2-minilm_synthetic_pet.pth
    # then open http://127.0.0.1:7860

Needs the ``demo`` extra (``pip install -e .[demo]``). The page is a thin
UI over :mod:`sera_mm.apis` (:func:`~sera_mm.apis.init_model`,
:func:`~sera_mm.apis.segment_and_render`); the model is loaded once at
start, so a config / checkpoint that do not fit fail at once with one
``error:`` line.
"""
import argparse
import atexit
import os
import os.path as osp
import shutil
import signal
import sys
import tempfile
import threading
from collections import deque
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402

from sera_mm.utils import setup_runtime  # noqa: E402

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from mmengine.config import DictAction  # noqa: E402

from sera_mm.apis import init_model, segment_and_render  # noqa: E402
from sera_mm.apis.rendering import zip_files  # noqa: E402
from sera_mm.utils.cli import (add_check_base_argument,  # noqa: E402
                               add_debug_argument, run_cli)

#: skimage.data photographs (CC0) offered as examples, with expressions.
PHOTO_EXAMPLES = (
    ('astronaut', 'the astronaut\nthe flag on the left'),
    ('coffee', 'the cup of coffee\nthe spoon'),
    ('chelsea', 'the cat'),
)
#: Synthetic scenes (the project's generator) offered as examples: seeds.
SCENE_SEEDS = (1, 2)
DEFAULT_MAX_EXPRESSIONS = 8


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='SERA-MM referring segmentation web demo (Gradio)')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (full or PET)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1)')
    parser.add_argument('--port', type=int, default=7860,
                        help='port (default 7860)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--threads', type=int, default=None,
                        help='PyTorch CPU threads (default: PyTorch\'s)')
    parser.add_argument('--max-expressions', type=int,
                        default=DEFAULT_MAX_EXPRESSIONS,
                        help='expressions per request at most')
    parser.add_argument('--examples-dir', default=None,
                        help='where the example images are written '
                        '(default: a temporary folder, removed at exit)')
    parser.add_argument('--work-dir', default=None,
                        help='where the files of each request are written '
                        '(default: a temporary folder, removed at exit)')
    add_check_base_argument(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f'--port must be in 1..65535, got {args.port}')
    if args.max_expressions < 1:
        parser.error('--max-expressions must be >= 1')
    return args


# ------------------------------------------------------------------ logic
def parse_expressions(block: Optional[str]) -> List[str]:
    """One expression per non-blank line, stripped."""
    return [line.strip() for line in (block or '').splitlines()
            if line.strip()]


def write_examples(folder: str,
                   synthetic_model: bool = False) -> List[List[str]]:
    """Write the example images into ``folder``; ``[[path, expressions]]``.
    Photos come from ``skimage.data`` (shipped with scikit-image), scenes
    from :func:`sera_mm.datasets.synthetic.sample_scene` with expressions
    from :func:`~sera_mm.datasets.synthetic.expression_candidates`. For a
    model trained on the synthetic benchmark the examples are scenes of
    that domain only (photographs would show meaningless masks); otherwise
    the photographs come first."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    examples = []
    try:
        if synthetic_model:
            raise ImportError('no photographs for a synthetic-data model')
        import skimage.data
        for name, texts in PHOTO_EXAMPLES:
            path = osp.join(folder, f'{name}.png')
            if not osp.isfile(path):
                rgb = np.asarray(getattr(skimage.data, name)())
                cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1]))
            examples.append([path, texts])
    except (ImportError, AttributeError, OSError):
        pass  # no photographs; the scenes still work
    from sera_mm.datasets.synthetic import (EXPR_TYPES, expression_candidates,
                                            sample_scene)
    for seed in SCENE_SEEDS:
        scene = sample_scene(np.random.default_rng(seed), image_size=256,
                             background='plain')
        texts = []
        for obj in scene.objects:
            for expr_type in EXPR_TYPES:
                cands = expression_candidates(scene, obj, expr_type)
                if cands and cands[0].text not in texts:
                    texts.append(cands[0].text)
                    break
            if len(texts) == 3:
                break
        path = osp.join(folder, f'synthetic_scene_{seed}.png')
        if not osp.isfile(path):
            cv2.imwrite(path, np.ascontiguousarray(scene.image[..., ::-1]))
        examples.append([path, '\n'.join(texts)])
    return examples


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1])


class DemoBackend:
    """What a request runs: check the inputs, segment through
    :func:`sera_mm.apis.segment_and_render`, write the files and the zip
    (one folder per request, the last ``keep`` kept).

    Returns of :meth:`__call__` (the Gradio outputs): overlays, masks and
    router charts as ``[(RGB array, caption)]``, the zip path (or None) and
    a status text (Markdown).
    """

    def __init__(self, model, max_expressions: int = DEFAULT_MAX_EXPRESSIONS,
                 keep: int = 8, work_root: Optional[str] = None) -> None:
        self.model = model
        self.max_expressions = int(max_expressions)
        self.root = work_root or tempfile.mkdtemp(prefix='sera_demo_')
        self._dirs: deque = deque()
        self._keep = keep
        self._lock = threading.Lock()  # one forward at a time (routers
        # keep the last batch's weights on the modules)

    def _new_dir(self) -> str:
        folder = tempfile.mkdtemp(dir=self.root)
        self._dirs.append(folder)
        while len(self._dirs) > self._keep:
            shutil.rmtree(self._dirs.popleft(), ignore_errors=True)
        return folder

    @staticmethod
    def _failure(message: str, warn: bool = True) -> Tuple[Any, ...]:
        if warn:
            try:
                import gradio as gr
                gr.Warning(message)
            except Exception:  # noqa: BLE001 (outside a request)
                pass
        return [], [], [], None, f'**Error:** {message}'

    def __call__(self, image_path: Optional[str],
                 expressions: Optional[str]) -> Tuple[Any, ...]:
        if not image_path:
            return self._failure('Upload an image (or pick an example) '
                                 'first.')
        texts = parse_expressions(expressions)
        if not texts:
            return self._failure('Type at least one expression (one per '
                                 'line); the expression box is empty.')
        if len(texts) > self.max_expressions:
            return self._failure(f'{len(texts)} expressions: at most '
                                 f'{self.max_expressions} per request.')
        stem = osp.splitext(osp.basename(str(image_path)))[0] or 'image'
        out_dir = self._new_dir()
        try:
            with self._lock:
                views, records = segment_and_render(
                    self.model, str(image_path), texts, out_dir=out_dir,
                    stem=stem, image_name=osp.basename(str(image_path)))
        except (ValueError, FileNotFoundError, OSError) as exc:
            return self._failure(f'cannot segment this input: {exc}')
        files = [p for v in views for p in (v.files['mask'],
                                            v.files['overlay'])]
        files.append(views[0].files['predictions'])
        zip_path = zip_files(files, osp.join(out_dir, f'{stem}_masks.zip'))
        overlays = [(_rgb(v.overlay), v.caption()) for v in views]
        masks = [(_rgb(v.mask_image), v.text) for v in views]
        charts = [(_rgb(v.chart), v.text) for v in views
                  if v.chart is not None]
        h, w = views[0].mask.shape
        status = (f'{len(views)} expression(s) on a {w}x{h} image: ' +
                  '; '.join(v.caption() for v in views))
        if not charts:
            status += ' (this model reports no routing)'
        return overlays, masks, charts, zip_path, status


def build_demo(backend: DemoBackend, examples: List[List[str]],
               title: str = 'SERA-MM referring segmentation',
               model_note: Optional[str] = None):
    """The Gradio page (not launched); ``model_note`` says what the model
    was trained on, at the top of the page."""
    import gradio as gr
    # Gradio's own upload/result cache: files older than an hour go
    with gr.Blocks(title=title, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f'# {title}\nUpload an image, type one or more '
                    'referring expressions (one per line) and press '
                    '**Segment**.' +
                    (f'\n\n**This model was {model_note}**'
                     if model_note else ''), elem_id='intro')
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type='filepath', image_mode=None,
                                 label='Image', sources=['upload',
                                                         'clipboard'],
                                 elem_id='input-image')
                texts = gr.Textbox(lines=4, label='Expressions (one per '
                                   'line)', placeholder='the red circle\n'
                                   'the largest shape',
                                   elem_id='expressions')
                run = gr.Button('Segment', variant='primary',
                                elem_id='segment')
                status = gr.Markdown(elem_id='status')
                download = gr.File(label='Download masks (zip of PNGs, '
                                   'overlays, predictions.json)',
                                   elem_id='download')
            with gr.Column(scale=2):
                overlays = gr.Gallery(label='Mask on the image',
                                      format='png', columns=2,
                                      object_fit='contain',
                                      elem_id='overlays')
                masks = gr.Gallery(label='Mask', format='png', columns=4,
                                   object_fit='contain', elem_id='masks')
                charts = gr.Gallery(label='Router expert weights',
                                    format='png', columns=2,
                                    object_fit='contain', elem_id='routing')
        if examples:
            gr.Examples(examples=examples, inputs=[image, texts],
                        label='Examples')
        outputs = [overlays, masks, charts, download, status]
        run.click(backend, inputs=[image, texts], outputs=outputs,
                  concurrency_limit=1)
    return demo


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    model = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=args.cfg_options,
                       check_base=args.check_base)
    temporary = []
    examples_dir = args.examples_dir
    if examples_dir is None:
        examples_dir = tempfile.mkdtemp(prefix='sera_demo_examples_')
        temporary.append(examples_dir)
    work_dir = args.work_dir
    if work_dir is None:
        work_dir = tempfile.mkdtemp(prefix='sera_demo_')
        temporary.append(work_dir)
    else:
        os.makedirs(work_dir, exist_ok=True)
    for folder in temporary:
        atexit.register(shutil.rmtree, folder, True)
    # SIGTERM ends the server like Ctrl-C (the temporary folders go)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from sera_mm.engine.training_data import training_data_note
    trained_on = getattr(model, 'trained_on', None) or {}
    note = training_data_note(trained_on)
    examples = write_examples(
        examples_dir, synthetic_model=bool(trained_on.get('synthetic')))
    import gradio as gr
    demo = build_demo(DemoBackend(model, args.max_expressions,
                                  work_root=work_dir), examples,
                      model_note=note)
    demo.queue(default_concurrency_limit=1)
    theme = gr.themes.Default(font=['system-ui', 'sans-serif'],
                              font_mono=['monospace'])
    print(f'SERA-MM demo: {args.config} + {args.checkpoint} on '
          f'http://{args.host}:{args.port}; the model was {note}',
          flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=False,
                show_error=True, theme=theme, allowed_paths=[examples_dir],
                quiet=True)
    return dict(examples=examples, note=note)


if __name__ == '__main__':
    run_cli(main)
