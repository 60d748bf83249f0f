"""High-level inference: build a model from a config and a checkpoint (full
or PET), segment the regions that expressions refer to in an image."""
import copy
import logging
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import set_random_seed
from mmseg.structures import SegDataSample
from torch import nn

from sera_mm.engine.pet_checkpoint import (is_pet_checkpoint,
                                           load_checkpoint_any,
                                           read_checkpoint)
from sera_mm.registry import MODELS
from sera_mm.utils.config_utils import apply_input_size, config_errors
from sera_mm.utils.image_io import ImageInput, load_image
from sera_mm.utils.text_input import check_expressions

#: Loaders that need a file on disk (mmcv / mmseg): inference gives the
#: image in memory, which SERA-MM's ``LoadReferImage`` / ``LoadReferMask``
#: accept (and they pass a sample without annotation through).
_FILE_ONLY_LOADERS = ('LoadImageFromFile', 'LoadAnnotations',
                      'LoadSingleRSImageFromFile',
                      'LoadMultipleRSImageFromFile',
                      'LoadBiomedicalImageFromFile',
                      'LoadBiomedicalAnnotation', 'LoadBiomedicalData',
                      'LoadDepthAnnotation')


@contextmanager
def _quiet_logger(level: int = logging.WARNING) -> Iterator[None]:
    """Raise mmengine's current logger to ``level`` for the duration
    (``init_weights`` outside a Runner logs every parameter to the
    console)."""
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(max(level, old))
    try:
        yield
    finally:
        logger.setLevel(old)


@contextmanager
def _seeded(seed: Optional[int]) -> Iterator[None]:
    """Seed python/numpy/torch like the Runner does; restore afterwards."""
    if seed is None:
        yield
        return
    states = (random.getstate(), np.random.get_state(),
              torch.random.get_rng_state())
    set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def init_model(config: Union[str, Path, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               cfg_options: Optional[dict] = None,
               check_base: str = 'error') -> nn.Module:
    """Build a segmentor from a config and load a full or PET checkpoint.

    For a PET checkpoint the model is built and initialised as the training
    run did (with the seed the checkpoint records, so randomly initialised
    frozen parts are rebuilt identically; global RNG state is restored
    afterwards), then the checkpoint is merged and checked (see
    :func:`sera_mm.engine.load_pet_checkpoint`).

    It first calls :func:`sera_mm.utils.register_all_modules` (without
    changing the default scope), which runs
    :func:`sera_mm.utils.setup_runtime`: a program that only calls
    ``init_model`` needs no other setup.

    Args:
        config: config file path or ``Config``.
        checkpoint: checkpoint path; None leaves the built weights.
        device: e.g. 'cpu' or 'cuda:0'.
        cfg_options: entries merged into the config.
        check_base: 'error' | 'warn' | 'ignore' for a PET base-weight
            mismatch.

    Returns:
        The model in eval mode, with ``model.cfg`` set to the config and
        ``model.trained_on`` to what it was trained on (the checkpoint's
        ``meta['trained_on']``, else the config's training data with
        ``source='config'``).

    Raises:
        FileNotFoundError: the config or checkpoint file is missing.
        ValueError: the config is not valid Python (file named).
        ConfigError: an unknown ``type`` or argument in ``model`` (the
            config and entry named).
        KeyError: the config has no ``model``.
        TypeError: ``config`` is neither a path nor a ``Config``.
    """
    from sera_mm.engine.launch_utils import load_config
    from sera_mm.utils import register_all_modules
    register_all_modules(init_default_scope=False)  # runs setup_runtime()
    if isinstance(config, (str, Path)):
        path = str(config)
        config = load_config(path)  # names the file in every error
    elif isinstance(config, Config):
        path = config.filename or '<Config>'
        config = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a path or a Config, got '
                        f'{type(config)}')
    if cfg_options:
        config.merge_from_dict(cfg_options)
    apply_input_size(config)
    if config.get('model') is None:
        raise KeyError(f'config {path}: no "model" entry to build')
    init_default_scope(config.get('default_scope', 'sera_mm'))

    ckpt = read_checkpoint(checkpoint) if checkpoint is not None else None
    pet = ckpt is not None and is_pet_checkpoint(ckpt)
    seed = ckpt['meta'].get('seed') if pet else None
    with _seeded(seed), config_errors(config, path):
        model = MODELS.build(config.model)
        if pet and hasattr(model, 'init_weights'):
            with _quiet_logger():
                model.init_weights()
    if ckpt is not None:
        load_checkpoint_any(model, ckpt, check_base=check_base,
                            source=f'checkpoint "{checkpoint}"')
        dataset_meta = ckpt['meta'].get('dataset_meta')
        if dataset_meta is not None:
            model.dataset_meta = dataset_meta
    model.cfg = config
    # what the model was trained on: the checkpoint's record, else the
    # config's training data (the demo and tools/infer.py show it)
    from sera_mm.engine.training_data import (TRAINED_ON_KEY,
                                              describe_training_data)
    recorded = (ckpt.get('meta') or {}).get(TRAINED_ON_KEY) if ckpt else None
    model.trained_on = dict(recorded) if recorded else dict(
        describe_training_data(config), source='config')
    model.to(device)
    model.eval()
    return model


def _pipeline_cfg(cfg: Config,
                  letterbox_size: Optional[int] = None) -> List[dict]:
    if cfg.get('test_pipeline') is not None:
        pipeline = cfg.test_pipeline
    elif cfg.get('test_dataloader') is not None:
        pipeline = cfg.test_dataloader.dataset.pipeline
    else:
        raise KeyError('the config has neither test_pipeline nor '
                       'test_dataloader.dataset.pipeline')
    kept = [copy.deepcopy(t) for t in pipeline]
    file_only = [str(t.get('type')) for t in kept
                 if str(t.get('type', '')).split('.')[-1] in
                 _FILE_ONLY_LOADERS]
    if file_only:
        raise KeyError(
            f'the test pipeline loads with {file_only}, which need a file on '
            'disk; inference gives the image in memory: use LoadReferImage '
            f'(and LoadReferMask) instead. Pipeline: {pipeline}')
    if letterbox_size is not None:
        boxes = [t for t in kept if t.get('type') == 'Letterbox']
        if not boxes:
            raise KeyError('letterbox_size: the test pipeline has no '
                           f'Letterbox transform: {pipeline}')
        for t in boxes:
            t['size'] = int(letterbox_size)
    return kept


def letterbox_settings(model: nn.Module) -> Optional[dict]:
    """``dict(size, pad_val, interpolation)`` of the Letterbox in the
    model's inference pipeline (defaults filled in; None without one)."""
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise KeyError('model has no .cfg; build it with init_model')
    boxes = [t for t in _pipeline_cfg(cfg) if t.get('type') == 'Letterbox']
    if not boxes:
        return None
    box = boxes[-1]
    return dict(size=int(box.get('size', 416)),
                pad_val=box.get('pad_val', 0),
                interpolation=str(box.get('interpolation', 'bilinear')))


def build_inference_pipeline(model: nn.Module,
                             letterbox_size: Optional[int] = None
                             ) -> Compose:
    """The config's test pipeline, unmodified (its ``LoadReferImage`` takes
    the image given in memory and ``LoadReferMask`` passes the sample
    without annotation through); cached on the model as
    ``model._inference_pipeline``.

    Args:
        model: a model from :func:`init_model`.
        letterbox_size: if given, the pipeline with its Letterbox resizing
            to this size instead (not cached; e.g. an ONNX export at
            another input size).
    """
    if letterbox_size is not None:
        cfg = getattr(model, 'cfg', None)
        if cfg is None:
            raise KeyError('model has no .cfg; build it with init_model')
        init_default_scope(cfg.get('default_scope', 'sera_mm'))
        return Compose(_pipeline_cfg(cfg, letterbox_size))
    pipeline = getattr(model, '_inference_pipeline', None)
    if pipeline is None:
        cfg = getattr(model, 'cfg', None)
        if cfg is None:
            raise KeyError('model has no .cfg; build it with init_model')
        init_default_scope(cfg.get('default_scope', 'sera_mm'))
        pipeline = Compose(_pipeline_cfg(cfg))
        model._inference_pipeline = pipeline
    return pipeline


def inference_model(model: nn.Module, image: ImageInput,
                    text: Union[str, Sequence[str]],
                    pipeline: Optional[Compose] = None
                    ) -> List[SegDataSample]:
    """Segment the region each expression refers to.

    Args:
        model: a model from :func:`init_model`.
        image: a path, an (H, W[, C]) uint8 BGR array (grayscale, BGRA,
            uint16 and bool accepted, see :mod:`sera_mm.utils.image_io`)
            or a PIL image (any mode).
        text: one expression or a list of them.
        pipeline: the data pipeline (default
            :func:`build_inference_pipeline`).

    Returns:
        One ``SegDataSample`` per expression with ``pred_sem_seg`` (1, H, W)
        in {0, 1} and ``seg_logits`` at the image's original resolution;
        its metainfo holds ``text`` (and ``routing`` if the model reports
        it).

    Raises:
        FileNotFoundError: the image path does not exist.
        ValueError: empty or non-string expression, or an unusable image.
    """
    texts = check_expressions(text)
    img, img_path = load_image(image)
    if pipeline is None:
        pipeline = build_inference_pipeline(model)
    inputs, samples = [], []
    for i, expression in enumerate(texts):
        results = pipeline(
            dict(img=img.copy(), img_path=img_path or '',
                 img_shape=img.shape[:2], ori_shape=img.shape[:2],
                 text=expression, sent_id=i, ref_id=None, expr_type=None))
        inputs.append(results['inputs'])
        samples.append(results['data_samples'])
    with torch.no_grad():
        return model.test_step(dict(inputs=inputs, data_samples=samples))
