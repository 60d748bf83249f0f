"""Referring segmentation with an exported ONNX model, ONNX Runtime only
(PyTorch is never imported).

Examples::

    python tools/deployment/onnx_infer.py model.onnx --image photo.jpg \
        --text "the man on the left" "the red car" --out-dir out/
    python tools/deployment/onnx_infer.py model.onnx --image photos/ \
        --text "the dog"
    python tools/deployment/onnx_infer.py model.onnx --pairs pairs.json

Writes what ``tools/infer.py`` writes: ``<stem>_<k>_mask.png`` (0/255),
``<stem>_<k>_overlay.png`` and ``predictions.json`` in ``--out-dir``. The
image is letterboxed with OpenCV, the expressions are tokenised with the
tokenizer saved beside the model (``<model>.tokenizer/``, read by the
``tokenizers`` library), the logits are cropped, resized and thresholded in
numpy, as the metadata of the export says.

Needs numpy, opencv, onnxruntime, tokenizers (and mmengine, whose file
helpers write atomically); the ``sera_mm`` modules used are loaded without
running the package's ``__init__`` (which imports PyTorch).
"""
import argparse
import importlib
import importlib.util
import os.path as osp
import sys
import types
from typing import List, Optional

#: The sera_mm packages whose ``__init__`` imports torch: registered as bare
#: namespaces so that their torch-free modules can be imported alone.
_TORCH_FREE_PARENTS = ('sera_mm', 'sera_mm.apis', 'sera_mm.engine',
                       'sera_mm.utils', 'sera_mm.visualization',
                       'sera_mm.datasets', 'sera_mm.datasets.transforms',
                       'sera_mm.deployment', 'sera_mm.evaluation')


def import_torch_free(*names: str) -> List[types.ModuleType]:
    """Import torch-free ``sera_mm`` modules without importing the package.

    When ``sera_mm`` is not imported yet, it and the parents in
    :data:`_TORCH_FREE_PARENTS` are put in ``sys.modules`` as empty
    packages pointing at their folders (their ``__init__`` is not run), then
    ``names`` are imported normally. With ``sera_mm`` already imported the
    real package is used.
    """
    if 'sera_mm' not in sys.modules:
        spec = importlib.util.find_spec('sera_mm')
        if spec is None or not spec.submodule_search_locations:
            raise ImportError('sera_mm is not installed (pip install -e .)')
        root = list(spec.submodule_search_locations)[0]
        for name in _TORCH_FREE_PARENTS:
            folder = osp.join(root, *name.split('.')[1:])
            pkg = types.ModuleType(name)
            pkg.__path__ = [folder]
            pkg.__package__ = name
            pkg.__file__ = osp.join(folder, '__init__.py')
            sys.modules[name] = pkg
            parent, _, child = name.rpartition('.')
            if parent:
                setattr(sys.modules[parent], child, pkg)
    return [importlib.import_module(n) for n in names]


(_cli, _image_io, _pred_io, _runtime) = import_torch_free(
    'sera_mm.utils.cli', 'sera_mm.utils.image_io',
    'sera_mm.apis.prediction_io', 'sera_mm.deployment.onnx_runtime')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Referring segmentation with an exported SERA-MM ONNX '
        'model (ONNX Runtime, no PyTorch)')
    parser.add_argument('model', help='.onnx file from pytorch2onnx.py')
    _pred_io.add_job_arguments(parser)
    parser.add_argument('--threads', type=int, default=None,
                        help='ONNX Runtime intra-op threads (default: its '
                        'own choice)')
    _cli.add_debug_argument(parser)
    args = parser.parse_args(argv)
    _pred_io.check_job_arguments(parser, args)
    return args


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    jobs = _pred_io.collect_jobs(args.image, args.text, args.pairs)
    for image, texts in jobs.items():
        _runtime.check_expressions(texts)
    segmenter = _runtime.OnnxReferSegmenter(args.model, threads=args.threads)
    stems = _pred_io.unique_stems(list(jobs))
    records: List[dict] = []
    for image, texts in jobs.items():
        img, _ = _image_io.load_image(image)
        preds = segmenter.predict(img, texts)
        extras = [{} if p['no_target_score'] is None else
                  {'no_target_score': p['no_target_score']} for p in preds]
        for record in _pred_io.write_predictions(
                img, image, texts, [p['mask'] for p in preds], args.out_dir,
                stems[image], [p['routing'] for p in preds], extras):
            records.append(record)
            print(_pred_io.format_record(record))
    _pred_io.write_predictions_json(records, args.out_dir)
    print(f'{len(records)} predictions for {len(jobs)} images written to '
          f'{args.out_dir}')
    return records


if __name__ == '__main__':
    _cli.run_cli(main)
