"""Convert a checkpoint of an earlier SERA-MM release to the current layout
(conv blocks as mmcv ConvModules, PET format 2).

Example::

    python tools/model_converters/upgrade_checkpoint.py \
        configs/sera/sera_mnv2-minilm_synthetic_600it.py old_pet.pth new_pet.pth

The model of CONFIG is built with its pretrained weights (a PET format-1
checkpoint's digest of the frozen weights is checked against them), the
converted checkpoint is loaded into it as a check, and the output is
written atomically; an existing output is never replaced unless
``--force`` is given, and the input is never modified.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from sera_mm.utils import setup_runtime  # noqa: E402

setup_runtime()
from sera_mm.apis import init_model  # noqa: E402
from sera_mm.engine.checkpoint_upgrade import upgrade_checkpoint  # noqa: E402,E501
from sera_mm.engine.pet_checkpoint import (  # noqa: E402
    load_checkpoint_any, read_checkpoint, write_checkpoint_file)
from sera_mm.utils.cli import add_debug_argument, run_cli  # noqa: E402


def upgrade(config: str, src: str, dst: str, force: bool = False,
            cfg_options: dict = None) -> list:
    """Write the upgraded ``src`` to ``dst``; returns the list of changes.

    Raises:
        FileExistsError: ``dst`` exists and ``force`` is False.
        ValueError: ``src`` and ``dst`` are the same file.
        CheckpointMismatchError: the checkpoint does not fit CONFIG's model
            even after the upgrade, or a format-1 digest does not match.
    """
    if osp.exists(dst) and not force:  # before building the model
        raise FileExistsError(f'{dst} exists; pass --force to replace it')
    model = init_model(config, None, device='cpu', cfg_options=cfg_options)
    ckpt, changes = upgrade_checkpoint(read_checkpoint(src), model)
    load_checkpoint_any(model, ckpt, source=f'upgraded "{src}"')
    write_checkpoint_file(ckpt, dst, force=force, src=src)
    return changes


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config the checkpoint was trained '
                        'with')
    parser.add_argument('src', help='checkpoint of an earlier release')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing output file')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    changes = upgrade(args.config, args.src, args.dst, args.force)
    print(f'{args.dst}: ' + ('; '.join(changes) if changes else
                             'already in the current layout (copied)'))
    return changes


if __name__ == '__main__':
    run_cli(main)
