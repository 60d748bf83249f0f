"""The built-in synthetic referring benchmarks (REFER and generalised
variants), generated on first use."""
from typing import Optional

from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log

from sera_mm.registry import DATASETS
from .grefer_dataset import GReferDataset
from .refer_dataset import ReferDataset


def _ensure(data_root: str, generate: dict, generator, is_complete,
            what: str) -> None:
    rank, world_size = get_dist_info()
    if not is_complete(data_root) and rank == 0:
        print_log(f'generating the {what} in {data_root} ({generate})',
                  logger='current')
        generator(data_root, **generate)
    if world_size > 1:
        barrier()
    if not is_complete(data_root):
        raise FileNotFoundError(
            f'the synthetic dataset in {data_root} is incomplete after '
            'generation; delete the folder and retry')


def ensure_synthetic_refer(data_root: str, generate: dict) -> None:
    """Generate the synthetic dataset into ``data_root`` unless a complete
    one is there. Under distributed training rank 0 generates while the
    other ranks wait at a barrier, then every rank reads the same files."""
    from sera_mm.datasets import synthetic
    _ensure(data_root, generate, synthetic.generate_synthetic_refer,
            synthetic.is_synthetic_refer_complete,
            'synthetic referring benchmark')


def ensure_synthetic_grefer(data_root: str, generate: dict) -> None:
    """:func:`ensure_synthetic_refer` for the generalised variant
    (``grefs(synthetic).json``)."""
    from sera_mm.datasets import synthetic
    _ensure(data_root, generate, synthetic.generate_synthetic_grefer,
            lambda d: synthetic.is_synthetic_refer_complete(
                d, synthetic.GREFS_FILE),
            'generalised synthetic referring benchmark')


@DATASETS.register_module()
class SyntheticReferDataset(ReferDataset):
    """:class:`ReferDataset` over the synthetic benchmark (split_by
    'synthetic': train/val/testA/testB), written by
    ``tools/dataset_converters/make_synthetic_refer.py`` or, with
    ``generate`` set, generated automatically the first time it is needed.

    Args:
        generate: arguments of
            :func:`sera_mm.datasets.synthetic.generate_synthetic_refer`
            (``num_images``, ``seed``, ``image_size``, ...); None never
            generates (the files must exist).
        **kwargs: :class:`ReferDataset` arguments.
    """

    def __init__(self,
                 data_root: str = 'data/synthetic',
                 split_by: str = 'synthetic',
                 data_prefix: Optional[dict] = None,
                 generate: Optional[dict] = None,
                 dataset_name: str = 'synthetic',
                 **kwargs) -> None:
        if generate is not None:
            gen = dict(generate)
            gen.setdefault('progress', True)
            ensure_synthetic_refer(data_root, gen)
        super().__init__(
            data_root=data_root,
            split_by=split_by,
            data_prefix=data_prefix or dict(img_path='images'),
            dataset_name=dataset_name,
            **kwargs)


@DATASETS.register_module()
class SyntheticGReferDataset(GReferDataset):
    """:class:`GReferDataset` over the generalised synthetic benchmark
    (gRefCOCO layout, split_by 'synthetic': train/val/testA/testB, refs in
    ``grefs(synthetic).json``): single-target expressions typed as in the
    REFER variant plus ``'multi'`` and ``'no_target'`` ones, generated on
    first use when ``generate`` is set.

    Args:
        generate: arguments of
            :func:`sera_mm.datasets.synthetic.generate_synthetic_grefer`
            (``num_images``, ``seed``, ``image_size``, ``multi_prob``,
            ``no_target_prob``, ...); None never generates.
        **kwargs: :class:`GReferDataset` arguments.
    """

    def __init__(self,
                 data_root: str = 'data/synthetic_gref',
                 split_by: str = 'synthetic',
                 data_prefix: Optional[dict] = None,
                 generate: Optional[dict] = None,
                 dataset_name: str = 'synthetic_gref',
                 **kwargs) -> None:
        if generate is not None:
            gen = dict(generate)
            gen.setdefault('progress', True)
            ensure_synthetic_grefer(data_root, gen)
        kwargs.setdefault('refs_file', 'grefs(synthetic).json')
        super().__init__(
            data_root=data_root,
            split_by=split_by,
            data_prefix=data_prefix or dict(img_path='images'),
            dataset_name=dataset_name,
            **kwargs)
