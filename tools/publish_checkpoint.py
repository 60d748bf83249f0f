"""Make a checkpoint fit to publish: keep the weights (and the metadata a PET
checkpoint needs to be merged with its pretrained encoders), drop the
optimizer, scheduler and logging state that only resuming needs.

Example::

    python tools/publish_checkpoint.py work_dirs/run1/iter_600.pth \
        checkpoints/sera_mnv2-minilm_synthetic_pet.pth

The output is written atomically and never replaces an existing file unless
``--force`` is given; its SHA-256 is printed.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from sera_mm.utils import setup_runtime  # noqa: E402

# the mmcv.ops fallback and the checkpoint safe globals, before anything
# imports mmseg (docs/en/advanced_guides/architecture.md)
setup_runtime()
from sera_mm.engine.pet_checkpoint import (read_checkpoint,  # noqa: E402
                                           write_checkpoint_file)
from sera_mm.utils.cli import add_debug_argument, run_cli  # noqa: E402

#: Top-level entries kept; everything else only serves --resume.
KEPT_KEYS = ('state_dict', 'meta')
#: ``meta`` entries dropped (training-state bookkeeping).
DROPPED_META = ('hook_msgs', )


def publish(src: str, dst: str, force: bool = False) -> str:
    """Write the slim copy of ``src`` to ``dst``; returns its SHA-256.

    Raises:
        FileExistsError: ``dst`` exists and ``force`` is False.
        ValueError: ``src`` and ``dst`` are the same file.
    """
    ckpt = read_checkpoint(src)
    slim = {k: ckpt[k] for k in KEPT_KEYS if k in ckpt}
    slim['meta'] = {k: v for k, v in slim.get('meta', {}).items()
                    if k not in DROPPED_META}
    return write_checkpoint_file(slim, dst, force=force, src=src)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint written by training')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing output file')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    digest = publish(args.src, args.dst, args.force)
    size = osp.getsize(args.dst) / 2**20
    print(f'{args.dst}: {size:.2f} MiB, sha256 {digest}')


if __name__ == '__main__':
    run_cli(main)
