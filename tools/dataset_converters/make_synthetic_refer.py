"""Generate the synthetic referring benchmark in the REFER layout, or its
generalised variant (multi-target and no-target expressions) in the
gRefCOCO layout.

Example::

    python tools/dataset_converters/make_synthetic_refer.py \
        --out data/synthetic --num-images 2000 --seed 0 --image-size 256
    python tools/dataset_converters/make_synthetic_refer.py --generalised \
        --out data/synthetic_gref

An existing complete dataset at ``--out`` is kept unless ``--overwrite`` is
given; a non-empty directory that is not a generated dataset is never
touched.
"""
import argparse
import json
import sys
import time

from sera_mm.utils import setup_runtime

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from sera_mm.datasets.synthetic import (  # noqa: E402
    GREFS_FILE, generate_synthetic_grefer, generate_synthetic_refer,
    is_synthetic_refer_complete)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the SERA-MM synthetic referring benchmark')
    parser.add_argument('--generalised', action='store_true',
                        help='the generalised variant (gRefCOCO layout: '
                        'multi-target and no-target expressions)')
    parser.add_argument('--out', default=None,
                        help='dataset root to write (default data/synthetic, '
                        'or data/synthetic_gref with --generalised)')
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
                        help='--generalised: probability of a multi-target '
                        'ref per image')
    parser.add_argument('--no-target-prob', type=float, default=0.5,
                        help='--generalised: probability of a no-target ref '
                        'per image')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing generated dataset')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = 'data/synthetic_gref' if args.generalised else \
            'data/synthetic'
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    complete = (is_synthetic_refer_complete(args.out, GREFS_FILE)
                if args.generalised else
                is_synthetic_refer_complete(args.out))
    if complete and not args.overwrite:
        kind = 'generalised synthetic' if args.generalised else 'synthetic'
        print(f'error: {args.out} already holds a complete {kind} dataset;'
              ' pass --overwrite to regenerate it', file=sys.stderr)
        return 1
    common = dict(num_images=args.num_images, seed=args.seed,
                  image_size=args.image_size,
                  split_ratios=tuple(args.split_ratios),
                  testb_fraction=args.testb_fraction,
                  progress=not args.no_progress, overwrite=args.overwrite)
    start = time.perf_counter()
    try:
        if args.generalised:
            summary = generate_synthetic_grefer(
                args.out, multi_prob=args.multi_prob,
                no_target_prob=args.no_target_prob, **common)
        else:
            summary = generate_synthetic_refer(args.out, **common)
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
