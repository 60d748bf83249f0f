"""Batching referring samples inside the dataloader's workers.

A worker process hands each tensor of a batch to the main process through
its own shared-memory segment (with the default ``file_descriptor``
strategy: one file descriptor passed over a socket per tensor). A batch of
32 samples made by mmengine's ``pseudo_collate`` holds 64 tensors (32
images, 32 masks), and the main process spends its time receiving them.
:func:`refer_collate` stacks them in the worker, so a batch crosses as two
tensors; :class:`~sera_mm.models.ReferDataPreProcessor` turns the stacked
batch into exactly what mmseg's ``SegDataPreProcessor`` makes of the list.
"""
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.dataset import pseudo_collate

from sera_mm.registry import FUNCTIONS

#: Key of the stacked ground-truth masks in a collated batch.
GT_BATCH_KEY = 'gt_sem_seg'


def _same_shape(tensors: Sequence[Any]) -> bool:
    """Whether ``tensors`` are at least one tensor of one shape and dtype."""
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    first = tensors[0]
    return all(t.shape == first.shape and t.dtype == first.dtype
               for t in tensors)


def _sample_masks(samples: Sequence[Any]) -> Optional[List[torch.Tensor]]:
    """The ``gt_sem_seg`` tensors of ``samples`` when every sample has one
    (and nothing else in its ``gt_sem_seg``), else None."""
    masks = []
    for sample in samples:
        pixel_data = getattr(sample, 'gt_sem_seg', None)
        if pixel_data is None or set(pixel_data.keys()) != {'data'}:
            return None
        masks.append(pixel_data.data)
    return masks


@FUNCTIONS.register_module()
def refer_collate(data_batch: Sequence[dict]) -> Dict[str, Any]:
    """mmengine's ``pseudo_collate`` with the batch's tensors stacked.

    Use it as a dataloader's ``collate_fn=dict(type='sera_mm.refer_collate')``
    together with the model's
    ``data_preprocessor=dict(type='ReferDataPreProcessor', ...)``, which
    puts the masks back into their samples.

    Args:
        data_batch: the pipeline's outputs, each a dict with ``inputs``
            (3, H, W) and ``data_samples`` (a ``SegDataSample``).

    Returns:
        ``pseudo_collate``'s dict, except that
        - ``inputs`` is one (B, 3, H, W) tensor when all images have one
          shape and dtype (the letterboxed training and test pipelines);
          otherwise the list of (3, H_i, W_i) tensors;
        - when all samples' ``gt_sem_seg`` masks have one shape and dtype,
          they are moved out of the samples (each ``gt_sem_seg`` keeps its
          ``PixelData``, without ``data``) into ``gt_sem_seg``, one
          (B, 1, H, W) tensor. Test samples whose masks keep their
          original, different sizes keep them.
    """
    batch = pseudo_collate(data_batch)
    inputs = batch.get('inputs')
    if isinstance(inputs, list) and _same_shape(inputs):
        batch['inputs'] = torch.stack(inputs)
    samples = batch.get('data_samples')
    if isinstance(samples, list) and samples:
        masks = _sample_masks(samples)
        if masks is not None and _same_shape(masks):
            batch[GT_BATCH_KEY] = torch.stack(masks)
            for sample in samples:
                del sample.gt_sem_seg.data
    return batch


def restore_masks(samples: Sequence[Any], masks: torch.Tensor) -> None:
    """Put the rows of ``masks`` (B, 1, H, W), from :func:`refer_collate`,
    back into ``samples[i].gt_sem_seg.data`` (as views).

    Raises:
        ValueError: ``masks`` is not 4-D, or its batch size differs from
            the number of samples.
    """
    if masks.dim() != 4 or masks.shape[0] != len(samples):
        raise ValueError(
            f"refer_collate's stacked '{GT_BATCH_KEY}': expected "
            f'(B, 1, H, W) with B = {len(samples)} samples, got shape '
            f'{tuple(masks.shape)}')
    for sample, mask in zip(samples, masks):
        sample.gt_sem_seg.data = mask


__all__ = ['refer_collate', 'restore_masks', 'GT_BATCH_KEY']
