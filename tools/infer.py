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
expressions), plus ``predictions.json`` listing them, and prints a summary.
"""
import argparse
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Tuple

import sera_mm  # noqa: F401  (mmcv.ops fallback, safe checkpoint loading)
from mmengine.config import DictAction

from sera_mm.apis import (inference_model, init_model, prediction_mask,
                          save_prediction)
from sera_mm.engine.atomic_io import atomic_write_json
from sera_mm.utils.cli import add_debug_argument, run_cli

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Referring segmentation of images with a SERA-MM model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (full or PET)')
    parser.add_argument('--image', help='an image file or a folder of images')
    parser.add_argument('--text', nargs='+', default=[],
                        help='expression(s), applied to every --image')
    parser.add_argument('--pairs', help='JSON list of {"image", "text"}')
    parser.add_argument('--out-dir', default='infer_out',
                        help='output folder')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.pairs is None and args.image is None:
        parser.error('give --image with --text, or --pairs')
    if args.image is not None and not args.text:
        parser.error('--image needs at least one --text')
    if args.text and args.image is None:
        parser.error('--text needs --image')
    return args


def collect_jobs(args: argparse.Namespace) -> Dict[str, List[str]]:
    """Map each image path to its expressions, in input order.

    Raises:
        FileNotFoundError: a missing --image, --pairs file or listed image.
        ValueError: a malformed pairs file or a folder without images.
    """
    jobs: Dict[str, List[str]] = OrderedDict()
    if args.image is not None:
        if osp.isdir(args.image):
            images = sorted(
                osp.join(args.image, f) for f in os.listdir(args.image)
                if f.lower().endswith(IMAGE_EXTENSIONS))
            if not images:
                raise ValueError(f'no images ({IMAGE_EXTENSIONS}) in folder '
                                 f'{args.image}')
        elif osp.isfile(args.image):
            images = [args.image]
        else:
            raise FileNotFoundError(f'image file not found: {args.image}')
        for image in images:
            jobs.setdefault(image, []).extend(args.text)
    if args.pairs is not None:
        if not osp.isfile(args.pairs):
            raise FileNotFoundError(f'pairs file not found: {args.pairs}')
        with open(args.pairs) as f:
            pairs = json.load(f)
        if not isinstance(pairs, list):
            raise ValueError(f'{args.pairs}: expected a JSON list of '
                             f'{{"image", "text"}}, got {type(pairs).__name__}')
        root = osp.dirname(osp.abspath(args.pairs))
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, dict) and 'image' in pair
                    and 'text' in pair):
                raise ValueError(f'{args.pairs}[{i}]: expected an object '
                                 f'with "image" and "text", got {pair!r}')
            image = pair['image']
            if not osp.isabs(image):
                image = osp.join(root, image)
            if not osp.isfile(image):
                raise FileNotFoundError(
                    f'image file not found: {image} ({args.pairs}[{i}])')
            jobs.setdefault(image, []).append(pair['text'])
    return jobs


def _stems(images: List[str]) -> Dict[str, str]:
    """Unique file stems for the images (suffix added on clashes)."""
    stems: Dict[str, str] = {}
    used: Dict[str, int] = {}
    for image in images:
        stem = osp.splitext(osp.basename(image))[0]
        count = used.get(stem, 0)
        used[stem] = count + 1
        stems[image] = stem if count == 0 else f'{stem}-{count}'
    return stems


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    jobs = collect_jobs(args)
    model = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=args.cfg_options)
    stems = _stems(list(jobs))
    records: List[dict] = []
    for image, texts in jobs.items():
        samples = inference_model(model, image, texts)
        for k, (text, sample) in enumerate(zip(texts, samples)):
            paths = save_prediction(image, sample, args.out_dir,
                                    f'{stems[image]}_{k}')
            mask = prediction_mask(sample)
            record = dict(image=image, text=text,
                          foreground=float(mask.mean()), **paths)
            if 'routing' in sample.metainfo:
                record['routing'] = sample.metainfo['routing']
            records.append(record)
            print(f'{image} | "{text}" | foreground {record["foreground"]:.1%}'
                  f' | {paths["mask"]}')
    atomic_write_json(records, osp.join(args.out_dir, 'predictions.json'),
                      indent=1, default=str)
    print(f'{len(records)} predictions for {len(jobs)} images written to '
          f'{args.out_dir}')
    return records


if __name__ == '__main__':
    run_cli(main)
