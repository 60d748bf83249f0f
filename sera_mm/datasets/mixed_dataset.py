"""Training on several referring datasets at once without evaluation
images, and evaluating several splits in one run."""
import copy
from collections import OrderedDict
from typing import Any, List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset, ConcatDataset
from mmengine.logging import print_log

from sera_mm.registry import DATASETS
from .leakage import (MATCH_BY, SourceCache, expand_specs, image_keys,
                      read_split, spec_dataset_name, spec_partition_splits)
from .refer_dataset import ReferDataset


def _build(cfg: Union[dict, BaseDataset]) -> BaseDataset:
    if isinstance(cfg, BaseDataset):
        return cfg
    return DATASETS.build(cfg)


def _with_pipeline(cfgs: Sequence[dict], pipeline: Optional[list],
                   **defaults: Any) -> List[dict]:
    """Copies of the dataset configs, each given ``pipeline`` (and the
    ``defaults``) unless it sets its own."""
    out = []
    for i, cfg in enumerate(cfgs):
        if not isinstance(cfg, dict):
            raise TypeError(f'datasets[{i}]: expected a dataset config '
                            f'(dict), got {type(cfg).__name__}')
        cfg = copy.deepcopy(dict(cfg))
        if pipeline is not None:
            cfg.setdefault('pipeline', copy.deepcopy(pipeline))
        for key, value in defaults.items():
            cfg.setdefault(key, value)
        out.append(cfg)
    return out


def _fmt(pair) -> str:
    return f'{pair[0]:,} of {pair[1]:,}'


@DATASETS.register_module()
class MixedReferDataset(ConcatDataset):
    """Several referring training sets as one, without any image that is in
    an evaluation split.

    RefCOCO, RefCOCO+ and RefCOCOg share COCO images across their
    partitions (e.g. a RefCOCO val image can be a RefCOCOg training image,
    and RefCOCOg's Google partition shares images with the others'
    evaluation splits), so every training set loses each image that any
    evaluated split contains (matched by COCO image id, or by file name).
    For each training set the log gives how many images, refs and
    expressions it lost, and with which evaluation split it shared images;
    ``exclusion_report`` holds the same numbers.

    Args:
        datasets: training dataset configs (``ReferDataset`` or a subclass:
            ``CRISReferDataset``, ``GReferDataset``, ...), each with its own
            ``split`` (normally ``'train'``).
        exclude: the evaluation splits, as split specs (dataset configs
            work: ``dict(data_root=..., split_by=..., split=...)`` or
            ``splits=[...]``; see :mod:`sera_mm.datasets.leakage`). Default
            (None): every split other than ``train`` of each training set's
            partition (for RefCOCO unc + RefCOCO+ unc + RefCOCOg umd: their
            val, testA, testB and val, test splits). ``[]`` excludes nothing
            (logged as a warning).
        match_by: ``'image_id'`` (COCO image ids, the default) or
            ``'file_name'`` (image file base names, for datasets whose ids
            are their own).
        pipeline: the pipeline of every training set that gives none.
        dataset_name: ``metainfo['dataset_name']``; default the training
            sets' names joined with ``+``.
        lazy_init, ignore_keys: as :class:`mmengine.dataset.ConcatDataset`
            (``dataset_name`` always may differ).

    Raises:
        ValueError: an unknown ``match_by``, an empty ``datasets``, a
            training set left empty by the exclusion.
        FileNotFoundError: a missing refs / split file of an evaluation
            split named in ``exclude`` (with the default, missing files of
            splits that the partition may not have are skipped).
        TypeError: a training set that is not a ``ReferDataset``.
    """

    def __init__(self,
                 datasets: Sequence[dict],
                 exclude: Optional[Sequence[dict]] = None,
                 match_by: str = 'image_id',
                 pipeline: Optional[list] = None,
                 dataset_name: Optional[str] = None,
                 lazy_init: bool = False,
                 ignore_keys: Union[str, List[str], None] = None) -> None:
        if match_by not in MATCH_BY:
            raise ValueError(f'match_by must be one of {MATCH_BY}, got '
                             f'{match_by!r}')
        if not datasets:
            raise ValueError('MixedReferDataset: datasets is empty; expected '
                             'one or more training dataset configs')
        cfgs = _with_pipeline(datasets, pipeline)
        default = exclude is None
        if default:
            exclude = []
            for cfg in cfgs:
                train_split = cfg.get('split', 'train')
                splits = [s for s in spec_partition_splits(cfg)
                          if s != train_split]
                if splits:
                    exclude.append(dict(cfg, splits=splits))
        self.match_by = match_by
        #: evaluation split name -> its image keys
        self.eval_images: 'OrderedDict[str, set]' = OrderedDict()
        cache = SourceCache()
        for spec in expand_specs(exclude):
            try:
                records = read_split(spec, cache,
                                     file_names=match_by == 'file_name')
            except FileNotFoundError:
                if not default:
                    raise
                continue  # e.g. no CRIS file for a split never prepared
            keys = image_keys(records, match_by)
            if not keys and default:
                continue
            self.eval_images.setdefault(spec['name'], set()).update(keys)
        excluded = frozenset().union(*self.eval_images.values()) \
            if self.eval_images else frozenset()
        if not excluded:
            print_log('MixedReferDataset: no evaluation image to exclude '
                      f'(exclude={exclude!r}); training sets are used whole',
                      logger='current', level=30)
        for cfg in cfgs:
            cfg['exclude_images'] = excluded
            cfg['exclude_by'] = match_by
        built = []
        for i, cfg in enumerate(cfgs):
            ds = _build(cfg)
            if not isinstance(ds, ReferDataset):
                raise TypeError(f'MixedReferDataset: datasets[{i}] is a '
                                f'{type(ds).__name__}; expected a '
                                'ReferDataset (or a subclass)')
            built.append(ds)
        keys = ['dataset_name']
        if isinstance(ignore_keys, str):
            keys.append(ignore_keys)
        elif ignore_keys:
            keys.extend(ignore_keys)
        self.names = [f'{ds.metainfo.get("dataset_name")}/{ds.split}'
                      for ds in built]
        #: training set name -> dict(images, refs, expressions: (removed,
        #: total); shared: {evaluation split: shared images})
        self.exclusion_report: 'OrderedDict[str, dict]' = OrderedDict()
        self._reported = False
        super().__init__(datasets=built, lazy_init=lazy_init,
                         ignore_keys=keys)
        self._metainfo['dataset_name'] = dataset_name or '+'.join(
            str(ds.metainfo.get('dataset_name')) for ds in built)
        self._metainfo['mixture'] = list(self.names)

    def full_init(self) -> None:
        super().full_init()
        if not self._reported:
            self._reported = True
            self._report()

    def _report(self) -> None:
        totals = [0, 0, 0]
        for name, ds in zip(self.names, self.datasets):
            stats = ds.exclusion_stats or dict(
                images=(0, None), refs=(0, None), expressions=(0, None),
                removed_images=frozenset())
            removed = stats['removed_images']
            shared = OrderedDict(
                (ev, len(removed & keys))
                for ev, keys in self.eval_images.items()
                if removed & keys)
            self.exclusion_report[name] = dict(
                images=stats['images'], refs=stats['refs'],
                expressions=stats['expressions'], shared=shared)
            for k, key in enumerate(('images', 'refs', 'expressions')):
                totals[k] += stats[key][0]
            if ds.exclusion_stats is None:
                print_log(f'MixedReferDataset: {name}: nothing excluded',
                          logger='current')
                continue
            where = ', '.join(f'{ev}: {n:,}' for ev, n in shared.items())
            print_log(
                f'MixedReferDataset: {name} loses {_fmt(stats["images"])} '
                f'images, {_fmt(stats["refs"])} refs and '
                f'{_fmt(stats["expressions"])} expressions whose images are '
                f'in evaluation splits ({where or "none shared"})',
                logger='current')
        print_log(
            f'MixedReferDataset: {len(self):,} training items from '
            f'{len(self.datasets)} datasets; {totals[0]:,} images, '
            f'{totals[1]:,} refs and {totals[2]:,} expressions removed '
            f'(matched by {self.match_by} against '
            f'{", ".join(self.eval_images) or "nothing"})',
            logger='current')


@DATASETS.register_module()
class ConcatReferDataset(ConcatDataset):
    """Several evaluation splits (of one or several datasets) in one
    dataloader, so one validation or test run evaluates them all.

    Each sample's metainfo gets ``eval_set``, the name of its split
    (``name`` in its config, else ``<dataset_name>/<split>``, e.g.
    ``refcoco_unc/testA``), which :class:`~sera_mm.evaluation.PerSetMetric`
    groups the results by (one metric table per dataset; keys
    ``<dataset>/<split>/<metric>``). ``metainfo['eval_sets']`` lists the
    names in order.

    Args:
        datasets: dataset configs (each may hold ``name``).
        pipeline: the pipeline of every dataset that gives none.
        test_mode: given to every dataset that does not set it (default
            True: one item per expression).
        dataset_name: ``metainfo['dataset_name']``; default the distinct
            dataset names joined with ``+``.
        lazy_init, ignore_keys: as :class:`mmengine.dataset.ConcatDataset`.
        split: not accepted (raises): the splits are those of ``datasets``.

    Raises:
        ValueError: an empty ``datasets``, two splits of the same name, or
            ``split`` given.
    """

    def __init__(self,
                 datasets: Sequence[dict],
                 pipeline: Optional[list] = None,
                 test_mode: bool = True,
                 dataset_name: Optional[str] = None,
                 lazy_init: bool = False,
                 ignore_keys: Union[str, List[str], None] = None,
                 split: Optional[str] = None) -> None:
        if split is not None:
            raise ValueError(
                f'ConcatReferDataset: split={split!r} does not apply; it '
                'evaluates the splits its datasets name (their "split"), all '
                'in one run (tools/train.py --test-splits is for a single '
                'dataset)')
        if not datasets:
            raise ValueError('ConcatReferDataset: datasets is empty; '
                             'expected one or more dataset configs')
        cfgs = _with_pipeline(datasets, pipeline, test_mode=test_mode)
        names = []
        for cfg in cfgs:
            name = cfg.pop('name', None)
            if name is None:
                name = f'{spec_dataset_name(cfg)}/{cfg.get("split")}'
            if name in names:
                raise ValueError(f'ConcatReferDataset: two splits are named '
                                 f'{name!r}; give each a distinct "name"')
            names.append(name)
        built = [_build(cfg) for cfg in cfgs]
        keys = ['dataset_name']
        if isinstance(ignore_keys, str):
            keys.append(ignore_keys)
        elif ignore_keys:
            keys.extend(ignore_keys)
        self.set_names = names
        super().__init__(datasets=built, lazy_init=lazy_init,
                         ignore_keys=keys)
        distinct = []
        for ds in built:
            ds_name = str(ds.metainfo.get('dataset_name'))
            if ds_name not in distinct:
                distinct.append(ds_name)
        self._metainfo['dataset_name'] = dataset_name or '+'.join(distinct)
        self._metainfo['eval_sets'] = list(names)

    def __getitem__(self, idx: int) -> Any:
        if not self._fully_initialized:
            self.full_init()
        dataset_idx, sample_idx = self._get_ori_dataset_idx(idx)
        dataset = self.datasets[dataset_idx]
        info = dataset.get_data_info(sample_idx)
        info['eval_set'] = self.set_names[dataset_idx]
        data = dataset.pipeline(info)
        if data is None:
            raise ValueError(f'ConcatReferDataset: the pipeline of '
                             f'{self.set_names[dataset_idx]} returned None '
                             f'for its item {sample_idx}')
        return data

