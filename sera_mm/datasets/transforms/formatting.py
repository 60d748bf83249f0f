"""Packing a referring sample for the model."""
from mmseg.datasets.transforms import PackSegInputs

from sera_mm.registry import TRANSFORMS
from ..refer_dataset import check_text

#: Metainfo carried by every referring sample (keys a sample lacks are
#: skipped: ``no_target`` and ``target_count`` come from generalised
#: datasets only; ``bbox``, the annotation's COCO box [x, y, w, h] at the
#: original resolution, from datasets whose annotations have one;
#: ``eval_set`` from :class:`~sera_mm.datasets.ConcatReferDataset`).
REFER_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'pad_shape',
                   'scale_factor', 'flip', 'flip_direction',
                   'reduce_zero_label', 'img_padding_size', 'text', 'ref_id',
                   'sent_id', 'ann_id', 'image_id', 'category_id',
                   'expr_type', 'no_target', 'target_count', 'bbox',
                   'eval_set')


@TRANSFORMS.register_module()
class PackReferInputs(PackSegInputs):
    """mmseg's ``PackSegInputs`` with the expression and ids in the
    metainfo: ``inputs`` (3, H, W) uint8 and a ``SegDataSample`` with
    ``gt_sem_seg`` (1, H, W) when a mask was loaded.

    Raises:
        ValueError: the sample has no (or an empty) ``text``, or one that is
            not valid Unicode (lone surrogates: undecodable bytes).
    """

    def __init__(self, meta_keys=REFER_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))

    def transform(self, results: dict) -> dict:
        text = results.get('text')
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f'sample {results.get("img_path")} (ref_id '
                f'{results.get("ref_id")}, sent_id {results.get("sent_id")})'
                f': expected a non-empty expression in "text", got {text!r}')
        check_text(text, f'sample {results.get("img_path")} (ref_id '
                   f'{results.get("ref_id")}, sent_id '
                   f'{results.get("sent_id")})')
        results.setdefault('flip', False)
        results.setdefault('flip_direction', None)
        return super().transform(results)
