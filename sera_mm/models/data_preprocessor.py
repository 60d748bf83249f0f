"""mmseg's data preprocessor for batches stacked in the workers."""
from typing import Any, Dict

from mmseg.models.data_preprocessor import SegDataPreProcessor
from torch import Tensor

from sera_mm.datasets.collate import GT_BATCH_KEY, restore_masks
from sera_mm.registry import MODELS

#: Ground-truth fields mmseg's ``stack_batch`` pads besides ``gt_sem_seg``:
#: batches with them take mmseg's own path.
_OTHER_GT_FIELDS = ('gt_edge_map', 'gt_depth_map')


@MODELS.register_module()
class ReferDataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` (same arguments, same outputs) that also takes
    the batches of :func:`~sera_mm.datasets.refer_collate`.

    Such a batch has ``inputs`` as one (B, 3, H, W) tensor and possibly the
    masks stacked under ``gt_sem_seg`` (B, 1, H, W). The masks are put back
    into the samples (views; the samples of the batch given, so hooks see
    them too). Then, where mmseg would add no padding (the letterboxed
    pipelines: every image already has the configured ``size``, or a
    multiple of ``size_divisor``), the batch is converted, normalised and
    its metainfo set in whole-batch operations, element for element what
    mmseg computes image by image (the same float operations, so the same
    values bit for bit). Any other batch, and every batch of
    ``pseudo_collate`` (lists), goes through mmseg's code unchanged.

    Returns:
        ``dict(inputs=(B, 3, H, W) float, data_samples=[...])``, as
        ``SegDataPreProcessor``.
    """

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        data = dict(data)  # the caller's batch keeps its keys
        masks = data.pop(GT_BATCH_KEY, None)
        samples = data.get('data_samples')
        if masks is not None:
            if samples is None:
                raise ValueError(
                    f"a batch with stacked '{GT_BATCH_KEY}' masks needs its "
                    f"'data_samples'")
            restore_masks(samples, masks)
        inputs = data.get('inputs')
        if isinstance(inputs, Tensor):
            if inputs.dim() != 4:
                raise ValueError(
                    f'ReferDataPreProcessor: a stacked batch of inputs must '
                    f'be (B, C, H, W), got shape {tuple(inputs.shape)}')
            if self._no_padding(inputs, samples, training):
                return self._forward_stacked(self.cast_data(data), training)
            data['inputs'] = list(inputs.unbind(0))
        return super().forward(data, training)

    def _no_padding(self, inputs: Tensor, samples: Any,
                    training: bool) -> bool:
        """Whether mmseg would pad nothing and touch no other field."""
        h, w = inputs.shape[-2:]
        if not training:
            return not self.test_cfg
        if samples is None or any(
                field in sample for sample in samples
                for field in _OTHER_GT_FIELDS):
            return False
        if self.size is not None and self.size_divisor is None:
            return h >= self.size[-2] and w >= self.size[-1]
        if self.size is None and self.size_divisor is not None:
            return h % self.size_divisor == 0 and w % self.size_divisor == 0
        return False  # mmseg's stack_batch raises its own error

    def _forward_stacked(self, data: dict,
                         training: bool) -> Dict[str, Any]:
        x = data['inputs']
        samples = data.get('data_samples')
        if self.channel_conversion and x.size(1) == 3:
            x = x.flip(1)
        x = x.float()
        if self._enable_normalize:
            x = (x - self.mean) / self.std
        if training:
            img_shape = x.shape[-2:]
            for sample in samples:
                pad_shape = sample.gt_sem_seg.shape \
                    if 'gt_sem_seg' in sample else None
                sample.set_metainfo({
                    'img_shape': img_shape,
                    'pad_shape': pad_shape,
                    'padding_size': (0, 0, 0, 0)
                })
            if self.batch_augments is not None:
                x, samples = self.batch_augments(x, samples)
        return dict(inputs=x, data_samples=samples)

