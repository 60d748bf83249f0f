"""Segment what expressions refer to in images, with a full or PET checkpoint.

Examples::

    python tools/infer.py CONFIG CKPT --image photo.jpg \
        --text "the man on the left" "the red car" --out-dir out/
    python tools/infer.py CONFIG CKPT --image photos/ --text "the dog"
    python tools/infer.py CONFIG CKPT --pairs pairs.json --out-dir out/

``pairs.json`` is a list of ``{"image": path, "text": expression}``;
relative image paths are read relative to the JSON file. For each
(image, expression) the tool writes ``<stem>_<k>_mask.png`` (0/255) and
``<stem>_<k>_overlay.png`` into ``--out-dir`` (``k`` numbers the image's
expressions), plus ``predictions.json`` listing them (each with ``boxes``,
the tight box ``[x1, y1, x2, y2]`` of its mask, null for an empty mask),
and prints a summary.
"""
import argparse
from typing import Dict, List

from sera_mm.utils import setup_runtime

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from mmengine.config import DictAction  # noqa: E402

from sera_mm.apis import inference_model, init_model, load_image  # noqa: E402
from sera_mm.apis.prediction_io import IMAGE_EXTENSIONS  # noqa: E402
from sera_mm.apis.prediction_io import (  # noqa: E402
    collect_jobs as _collect_jobs)
from sera_mm.apis.prediction_io import (add_job_arguments,  # noqa: E402
                                        check_job_arguments,
                                        format_record, save_predictions,
                                        unique_stems, write_predictions_json)
from sera_mm.utils.cli import add_debug_argument, run_cli  # noqa: E402

__all__ = ['IMAGE_EXTENSIONS', 'parse_args', 'collect_jobs', 'main']


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Referring segmentation of images with a SERA-MM model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (full or PET)')
    add_job_arguments(parser)
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    check_job_arguments(parser, args)
    return args


def collect_jobs(args: argparse.Namespace) -> Dict[str, List[str]]:
    """Map each image path to its expressions, in input order (see
    :func:`sera_mm.apis.prediction_io.collect_jobs`).

    Raises:
        FileNotFoundError: a missing --image, --pairs file or listed image.
        ValueError: a malformed pairs file or a folder without images.
    """
    return _collect_jobs(args.image, args.text, args.pairs)


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    jobs = collect_jobs(args)
    model = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=args.cfg_options)
    from sera_mm.engine.training_data import training_data_note
    print(f'model {training_data_note(getattr(model, "trained_on", None))}')
    stems = unique_stems(list(jobs))
    records: List[dict] = []
    for image, texts in jobs.items():
        img, _ = load_image(image)  # decoded once for model and pictures
        samples = inference_model(model, img, texts)
        for record in save_predictions(img, samples, args.out_dir,
                                       stems[image], image_name=image):
            records.append(record)
            print(format_record(record))
    write_predictions_json(records, args.out_dir)
    print(f'{len(records)} predictions for {len(jobs)} images written to '
          f'{args.out_dir}')
    return records


if __name__ == '__main__':
    run_cli(main)
