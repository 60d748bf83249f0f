"""Generalised referring expressions (gRefCOCO, ReLA, CVPR 2023): an
expression may name several objects or none."""
import os.path as osp
from typing import Any, Dict, List, Optional

from mmengine.logging import print_log

from sera_mm.registry import DATASETS
from .refer_dataset import ReferDataset

GREF_LAYOUT_EXAMPLE = ('data/grefcoco/grefs(unc).json, data/grefcoco/'
                       'instances.json, images under data/coco/train2014 '
                       "(data_root='data/grefcoco', data_prefix=dict("
                       "img_path='../coco/train2014'))")

#: ``ann_id`` of a ref that names nothing.
NO_TARGET_ID = -1


def target_expr_type(num_targets: int) -> str:
    """'no_target', 'single' or 'multi' for a ref naming that many
    annotations (the type :class:`GReferDataset` gives untyped
    sentences)."""
    if num_targets == 0:
        return 'no_target'
    return 'single' if num_targets == 1 else 'multi'


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@DATASETS.register_module()
class GReferDataset(ReferDataset):
    """Generalised referring expressions in the public gRefCOCO layout.

    ``grefs(<split_by>).json`` (or a pickle ``grefs(<split_by>).p`` of the
    same records, read with the plain-data unpickler) is a list of refs::

        ref_id, image_id, split, sent_ids, file_name,
        sentences=[{sent_id, sent, raw, tokens}],
        ann_id=[...]        # the referred annotations; [-1] for none
        category_id=[...]   # their categories
        no_target=bool      # True iff ann_id == [-1] (optional)

    ``instances.json`` holds the COCO images, annotations (polygons or RLE)
    and categories; images are COCO train2014 (``data_prefix``). gRefCOCO
    uses split_by ``unc``: train / val / testA / testB. A scalar ``ann_id``
    or ``category_id`` is read as a one-element list.

    Items are those of :class:`ReferDataset` (one per sentence in
    evaluation; one per ref or per sentence in training, ``train_mode``)
    with:

    - ``segmentations``: the segmentations of the referred annotations;
      ``LoadReferMask`` decodes their union, all zeros for no target;
    - ``ann_id``, ``category_id``: lists (``[-1]`` for no target);
    - ``no_target``: bool; ``target_count``: the number of referred
      annotations (0 for no target);
    - ``expr_type``: the sentence's or ref's ``expr_type`` key when present,
      else (``derive_expr_type``) ``'no_target'``, ``'single'`` or
      ``'multi'`` from the number of targets, so metrics and routing
      statistics break real gRefCOCO down by target count.

    Args:
        data_root: folder with the refs and instances files.
        split_by: a partition of :data:`~sera_mm.datasets.SPLITS`
            ('unc' for gRefCOCO, 'synthetic' for the built-in variant).
        split: a split of ``split_by``.
        ann_file: the COCO instances file, relative to ``data_root``.
        refs_file: the refs file; default ``grefs(<split_by>).json``, or
            ``grefs(<split_by>).p`` when only the pickle exists.
        skip_crowd: leave crowd annotations (``iscrowd=1``) out of the
            union, as ReLA's loader does (kept when a ref lists only crowd
            annotations, so a targeted ref never turns empty).
        derive_expr_type: type untyped sentences by their target count.
        **kwargs: :class:`ReferDataset` arguments (``data_prefix``,
            ``train_mode``, ``test_mode``, ``pipeline``, ``skip_empty``,
            ``check_images``, ``dataset_name``, ...).

    Raises:
        KeyError: a ref without ``ann_id``, or naming an annotation that is
            not in instances.json (the message names the ref_id and the
            ann_id).
        ValueError: an ``ann_id`` that is not an int, ``-1`` mixed with
            other ids, an empty list, a ``no_target`` flag that contradicts
            ``ann_id``, or an annotation of another image (each naming the
            ref_id and the bad ann_id); and everything
            :class:`ReferDataset` raises.
    """

    def __init__(self,
                 data_root: str,
                 split_by: str = 'unc',
                 split: str = 'train',
                 refs_file: Optional[str] = None,
                 skip_crowd: bool = True,
                 derive_expr_type: bool = True,
                 **kwargs) -> None:
        self.skip_crowd = bool(skip_crowd)
        self.derive_expr_type = bool(derive_expr_type)
        if refs_file is None:
            refs_file = self.default_refs_file(data_root, split_by)
        super().__init__(data_root=data_root, split_by=split_by, split=split,
                         refs_file=refs_file, **kwargs)

    @staticmethod
    def default_refs_file(data_root: str, split_by: str) -> str:
        """``grefs(<split_by>).json``, or the ``.p`` pickle when only that
        exists under ``data_root``."""
        name = f'grefs({split_by}).json'
        pickle_name = f'grefs({split_by}).p'
        if not osp.isfile(osp.join(data_root, name)) and osp.isfile(
                osp.join(data_root, pickle_name)):
            return pickle_name
        return name

    # -- loading -----------------------------------------------------------
    def _layout(self) -> str:
        return (f'expected the gRefCOCO layout: '
                f'{osp.join(self.data_root, self.refs_file)}, '
                f'{self.ann_file} and the images under '
                f'{self.data_prefix.get("img_path", "")} (e.g. '
                f'{GREF_LAYOUT_EXAMPLE})')

    def _ann_ids(self, ref: dict) -> List[int]:
        """The ref's annotation ids, checked; ``[]`` for no target."""
        ref_id = ref.get('ref_id')
        if 'ann_id' not in ref:
            raise KeyError(f'ref_id {ref_id}: no ann_id in {self.refs_file}'
                           ' (a no-target ref has ann_id [-1])')
        ids = _as_list(ref['ann_id'])
        for aid in ids:
            if isinstance(aid, bool) or not isinstance(aid, int):
                raise ValueError(f'ref_id {ref_id}: ann_id {aid!r} is not '
                                 f'an integer annotation id (ann_id {ids})')
        if not ids:
            raise ValueError(f'ref_id {ref_id}: ann_id is an empty list; a '
                             f'no-target ref has ann_id [{NO_TARGET_ID}]')
        no_target = NO_TARGET_ID in ids
        if no_target and len(ids) > 1:
            raise ValueError(f'ref_id {ref_id}: ann_id {ids} mixes '
                             f'{NO_TARGET_ID} (no target) with annotation '
                             'ids')
        flag = ref.get('no_target')
        if flag is not None and bool(flag) != no_target:
            raise ValueError(f'ref_id {ref_id}: no_target={flag!r} '
                             f'contradicts ann_id {ids}')
        if no_target:
            return []
        unique: List[int] = []
        for aid in ids:
            if aid not in unique:
                unique.append(aid)
        return unique

    def _ref_target(self, ref: dict, anns: Dict[Any, dict]) -> dict:
        """``ann_id`` / ``category_id`` lists, ``segmentations`` (of the
        referred annotations; empty for no target), ``no_target`` and
        ``target_count``."""
        ref_id = ref.get('ref_id')
        ids = self._ann_ids(ref)
        found = []
        for aid in ids:
            ann = anns.get(aid)
            if ann is None:
                raise KeyError(f'ref_id {ref_id}: annotation id {aid} is '
                               f'not in {self.ann_file}')
            if ann.get('image_id') != ref.get('image_id'):
                raise ValueError(
                    f'ref_id {ref_id}: annotation id {aid} belongs to image '
                    f'{ann.get("image_id")}, not to the ref\'s image '
                    f'{ref.get("image_id")}')
            found.append(ann)
        kept = found
        if self.skip_crowd:
            kept = [a for a in found if not a.get('iscrowd')] or found
        if 'category_id' in ref:
            cats = _as_list(ref['category_id'])
        else:
            cats = [a.get('category_id') for a in found] or [NO_TARGET_ID]
        return dict(ann_id=ids or [NO_TARGET_ID],
                    category_id=cats,
                    segmentations=[a['segmentation'] for a in kept],
                    no_target=not ids,
                    target_count=len(ids))

    def _sentences(self, ref: dict) -> List[dict]:
        out = super()._sentences(ref)
        if self.derive_expr_type:
            derived = None
            for sent in out:
                if sent['expr_type'] is None:
                    if derived is None:
                        derived = target_expr_type(len(self._ann_ids(ref)))
                    sent['expr_type'] = derived
        return out

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        refs = {d['ref_id']: d for d in data_list}
        empty = sum(1 for d in refs.values() if d['no_target'])
        multi = sum(1 for d in refs.values() if d['target_count'] > 1)
        print_log(f'{type(self).__name__} {self.split}: {len(data_list)} '
                  f'items of {len(refs)} refs ({multi} multi-target, '
                  f'{empty} no-target)', logger='current')
        return data_list
