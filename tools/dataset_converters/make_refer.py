"""Turn your own referring data into the REFER layout SERA-MM trains on.

(a) COCO instances (polygons or RLE) and rows naming annotation ids::

    python tools/dataset_converters/make_refer.py rows.csv \\
        --coco instances.json --images photos/ --out data/my_refer

    rows.csv:  image,object_id,expression[,split]

(b) a folder of images, one mask PNG per object (pixels > 0), rows::

    python tools/dataset_converters/make_refer.py expressions.csv \\
        --images photos/ --masks masks/ --out data/my_refer --copy-images

    expressions.csv:  image,mask,expression[,split]

Rows may be a CSV with a header or a JSON list of objects with those keys
(``ann_id`` for ``object_id``; ``sentence``/``sent``/``text`` for
``expression``; optional ``category`` and ``sent_id``). Rows naming the same
object become one ref. Without a ``split`` column each image is put in one
split at random (``--seed``) in ``--split-ratios`` (default train=0.8 val=0.1
test=0.1). Output: ``<out>/refs(<split_by>).json`` and
``<out>/instances.json`` (and the images in ``<out>/images`` with
``--copy-images``), read by ``ReferDataset`` with ``split_by`` (default
``custom``); ``configs/_base_/datasets/custom_refer.py`` is the config
template.

Every bad row (missing image or mask, unreadable file, empty mask, mask of
another size than its image, empty expression, unknown or duplicate id, an
image in two splits) is named with its line and what was expected, and
nothing is written.

``--write-example DIR`` writes a tiny input of form (b) (8 images, 16
objects, 32 expressions) to try the whole path on.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    from sera_mm.utils.cli import add_debug_argument
    parser = argparse.ArgumentParser(
        description='Convert images + masks (or COCO instances) + '
        'expressions into the REFER layout (refs(<split_by>).json, '
        'instances.json)')
    parser.add_argument('rows', nargs='?',
                        help='CSV (with header) or JSON rows: image, '
                        'object_id or mask, expression[, split]')
    parser.add_argument('--out', help='output folder (the data_root)')
    parser.add_argument('--images', help='folder the image paths are '
                        'relative to (default: the rows file\'s folder)')
    parser.add_argument('--masks', help='folder the mask paths are relative '
                        'to (default: the rows file\'s folder)')
    parser.add_argument('--coco', help='COCO instances JSON for rows with '
                        'object_id')
    parser.add_argument('--split-by', default='custom',
                        help='partition name: refs(<split_by>).json '
                        '(default custom: splits train, val, test, testA, '
                        'testB)')
    parser.add_argument('--split-ratios', nargs='+', metavar='NAME=FRACTION',
                        default=['train=0.8', 'val=0.1', 'test=0.1'],
                        help='split ratios by image when the rows give no '
                        'split (default train=0.8 val=0.1 test=0.1)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the split assignment')
    parser.add_argument('--copy-images', action='store_true',
                        help='copy the images to <out>/images (the config '
                        'template\'s image folder)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing refs file in --out')
    parser.add_argument('--write-example', metavar='DIR',
                        help='write a tiny input of form (b) to DIR and exit')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.write_example is None and (args.rows is None or
                                       args.out is None):
        parser.error('give ROWS and --out (or --write-example DIR)')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from sera_mm.utils import setup_runtime
    setup_runtime()  # before sera_mm.datasets imports mmseg
    from sera_mm.datasets.make_refer import (convert, parse_ratios,
                                             write_example)
    if args.write_example is not None:
        paths = write_example(args.write_example)
        print(f'example written: {paths["rows"]} (rows), {paths["images"]} '
              f'(images), {paths["masks"]} (masks)')
        return paths
    summary = convert(
        args.rows, args.out, images_dir=args.images, coco_file=args.coco,
        masks_dir=args.masks, split_by=args.split_by,
        ratios=parse_ratios(args.split_ratios), seed=args.seed,
        copy_images=args.copy_images, overwrite=args.overwrite)
    print(f'wrote {summary["refs_file"]} and {summary["instances_file"]}')
    for split, st in summary['splits'].items():
        print(f'  {split}: {st["images"]} images, {st["refs"]} refs, '
              f'{st["expressions"]} expressions')
    print(cfg_options_hint(args.out, summary))
    return summary


def cfg_options_hint(out: str, summary: dict) -> str:
    """How to point a config built on
    configs/_base_/datasets/custom_refer.py at the converted data."""
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts.append(f'{loader}.dataset.data_root={out}')
        if summary['split_by'] != 'custom':
            opts.append(f'{loader}.dataset.split_by={summary["split_by"]}')
        if summary['img_path'] != 'images':
            opts.append(f'{loader}.dataset.data_prefix.img_path='
                        f'{summary["img_path"]}')
    return ('train on it with a config over '
            'configs/_base_/datasets/custom_refer.py (set data_root there) '
            'or add\n  --cfg-options ' + ' '.join(opts))


if __name__ == '__main__':
    from sera_mm.utils.cli import run_cli
    run_cli(main)
