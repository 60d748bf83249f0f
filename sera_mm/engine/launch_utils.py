"""Config edits shared by ``tools/train.py``, ``tools/test.py`` and
``tools/infer.py`` (mmseg's command-line behaviour, plus CPU specifics)."""
import logging
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from .pet_checkpoint import is_pet_checkpoint


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file and merge ``--cfg-options`` into it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def resolve_work_dir(cfg: Config, config_path: str,
                     work_dir: Optional[str] = None) -> str:
    """Set ``cfg.work_dir``: the CLI value, else the config's, else
    ``./work_dirs/<config name>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    return cfg.work_dir


def enable_amp(cfg: Config) -> str:
    """Switch ``cfg.optim_wrapper`` to mixed precision.

    With CUDA: mmengine's ``AmpOptimWrapper`` (fp16, dynamic loss scale), as
    mmseg does. Without CUDA: :class:`~sera_mm.engine.CPUAmpOptimWrapper`
    (bfloat16 autocast, no loss scaling).

    Returns:
        The wrapper type now in the config.

    Raises:
        ValueError: the config's wrapper is neither ``OptimWrapper`` nor
            already a mixed-precision one.
    """
    wrapper = cfg.optim_wrapper
    current = wrapper.get('type', 'OptimWrapper')
    if current in ('AmpOptimWrapper', 'CPUAmpOptimWrapper'):
        print_log(f'mixed precision is already enabled ({current})',
                  logger='current', level=logging.WARNING)
        return current
    if current != 'OptimWrapper':
        raise ValueError('--amp needs optim_wrapper.type "OptimWrapper", '
                         f'got {current!r}')
    if torch.cuda.is_available():
        wrapper.type = 'AmpOptimWrapper'
        wrapper.loss_scale = 'dynamic'
    else:
        wrapper.type = 'CPUAmpOptimWrapper'
        wrapper.dtype = 'bfloat16'
    return wrapper.type


def enable_visualization(cfg: Config, show_dir: str,
                         interval: int = 1) -> None:
    """Make the test run draw its predictions into ``show_dir``
    (``default_hooks.visualization.draw=True``, drawing every ``interval``-th
    batch; the visualizer saves under ``show_dir``).

    Raises:
        KeyError: the config has no ``default_hooks.visualization``.
    """
    hooks = cfg.get('default_hooks') or {}
    if hooks.get('visualization') is None:
        raise KeyError('--show-dir needs a visualization hook in '
                       'default_hooks (e.g. visualization=dict('
                       'type="ReferVisualizationHook")); the config has '
                       f'default_hooks keys {sorted(hooks)}')
    hook = hooks['visualization']
    if interval < 1:
        raise ValueError(f'interval must be >= 1, got {interval}')
    hook['draw'] = True
    hook['interval'] = interval
    if 'ReferVisualizationHook' in str(hook.get('type', '')):
        hook['out_dir'] = show_dir
    if 'visualizer' in cfg and cfg.visualizer is not None:
        cfg.visualizer['save_dir'] = show_dir
    else:
        cfg.visualizer = dict(type='Visualizer', save_dir=show_dir,
                              vis_backends=[dict(type='LocalVisBackend')])


def add_custom_hook(cfg: Config, hook: dict) -> None:
    """Append ``hook`` to ``cfg.custom_hooks``."""
    hooks = list(cfg.get('custom_hooks') or [])
    hooks.append(hook)
    cfg.custom_hooks = hooks


def adopt_checkpoint_seed(cfg: Config, checkpoint: dict) -> Optional[int]:
    """For a PET checkpoint, build the model with the training run's seed.

    A PET checkpoint omits the frozen weights; pretrained ones reload
    identically, but weights initialised at random (e.g. tiny test encoders)
    are only rebuilt identically from the same seed. The Runner seeds before
    building the model, so setting ``cfg.randomness.seed`` to the seed
    recorded in the checkpoint reproduces them (the PET loader's base-digest
    check verifies it).

    Returns:
        The seed adopted, or None (full checkpoint or no recorded seed).
    """
    if not is_pet_checkpoint(checkpoint):
        return None
    seed = (checkpoint.get('meta') or {}).get('seed')
    if seed is None:
        return None
    randomness = dict(cfg.get('randomness') or {})
    randomness['seed'] = int(seed)
    cfg.randomness = randomness
    return int(seed)


__all__ = [
    'load_config', 'resolve_work_dir', 'enable_amp', 'enable_visualization',
    'add_custom_hook', 'adopt_checkpoint_seed'
]
