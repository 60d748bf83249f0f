"""Generate the generalised synthetic referring benchmark (multi-target and
no-target expressions) in the gRefCOCO layout.

Example::

    python tools/dataset_converters/make_synthetic_grefer.py \
        --out data/synthetic_gref --num-images 2000 --seed 0 --image-size 256

An existing complete dataset at ``--out`` is kept unless ``--overwrite`` is
given; a non-empty directory that is not a generated dataset is never
touched.
"""
import argparse
import json
import sys
import time

from sera_mm.datasets.synthetic import (GREFS_FILE, generate_synthetic_grefer,
                                        is_synthetic_refer_complete)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the SERA-MM generalised synthetic referring '
        'benchmark (gRefCOCO layout)')
    parser.add_argument('--out', default='data/synthetic_gref',
                        help='dataset root to write')
    parser.add_argument('--num-images', type=int, default=2000,
                        help='images in train + val + testA')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--split-ratios', type=float, nargs=3,
                        default=(0.8, 0.1, 0.1),
                        metavar=('TRAIN', 'VAL', 'TESTA'))
    parser.add_argument('--testb-fraction', type=float, default=0.1,
                        help='extra testB images as a fraction of '
                        '--num-images')
    parser.add_argument('--multi-prob', type=float, default=0.7,
                        help='probability of a multi-target ref per image')
    parser.add_argument('--no-target-prob', type=float, default=0.5,
                        help='probability of a no-target ref per image')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing generated dataset')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if is_synthetic_refer_complete(args.out, GREFS_FILE) and \
            not args.overwrite:
        print(f'error: {args.out} already holds a complete generalised '
              'synthetic dataset; pass --overwrite to regenerate it',
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        summary = generate_synthetic_grefer(
            args.out, num_images=args.num_images, seed=args.seed,
            image_size=args.image_size, split_ratios=tuple(args.split_ratios),
            testb_fraction=args.testb_fraction, multi_prob=args.multi_prob,
            no_target_prob=args.no_target_prob,
            progress=not args.no_progress, overwrite=args.overwrite)
    except (FileExistsError, NotADirectoryError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f'wrote {summary["total_images"]} images to {args.out} in '
          f'{elapsed:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
