"""Distributed launching that also works without CUDA.

On GPUs mmengine's own set-up is used unchanged (``init_dist`` with NCCL).
Without CUDA, mmengine 0.10.x needs four things handled, all done here:

1. ``init_dist`` calls ``torch.cuda.set_device``: :func:`setup_distributed`
   initialises a gloo process group from torchrun's environment first, so
   the Runner sees an initialised group and skips its own set-up.
2. The Runner wraps the model in DDP with ``device_ids=[LOCAL_RANK]``, which
   DDP rejects for CPU modules: ``model_wrapper_cfg`` is set with
   ``device_ids=None``.
3. SyncBN needs CUDA: ``SyncBN`` norm layers in the model config are turned
   into ``BN`` (with a warning) and ``cfg.sync_bn`` is dropped.
4. A rank can abort at interpreter exit unless the group is torn down:
   :func:`cleanup_distributed` ends with a barrier and
   ``destroy_process_group()``.
"""
import datetime
import logging
import os
from typing import Any, List

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log
from torch.nn.parallel import DistributedDataParallel

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
_TORCHRUN_ENV = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                 'MASTER_PORT')


def _replace_sync_bn(node: Any, path: str, replaced: List[str]) -> None:
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN', 'SyncBatchNorm'):
            node['type'] = 'BN'
            replaced.append(path or 'model')
        for key, value in node.items():
            _replace_sync_bn(value, f'{path}.{key}' if path else key,
                             replaced)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _replace_sync_bn(value, f'{path}[{i}]', replaced)


def revert_sync_bn_in_config(cfg: Config) -> List[str]:
    """Turn every ``SyncBN`` norm config of ``cfg.model`` into ``BN`` and
    drop ``cfg.sync_bn``.

    Returns:
        The config paths that were changed.
    """
    replaced: List[str] = []
    if 'model' in cfg:
        _replace_sync_bn(cfg.model, 'model', replaced)
    if cfg.get('sync_bn') is not None:
        replaced.append('sync_bn')
        cfg.sync_bn = None
    return replaced


def setup_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare ``cfg`` (and, on CPU, the process group) for ``launcher``.

    Call it after the config is final and before ``Runner.from_cfg``.

    Args:
        cfg: the full config; ``cfg.launcher`` is set to ``launcher``.
        launcher: 'none', 'pytorch' (torchrun), 'slurm' or 'mpi'.

    Returns:
        True if the run is distributed.

    Raises:
        ValueError: unknown launcher, or a launcher other than 'pytorch'
            without CUDA.
        KeyError: a torchrun environment variable is missing.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got '
                         f'{launcher!r}')
    cfg.launcher = launcher
    if launcher == 'none':
        return False
    if torch.cuda.is_available():
        return True  # mmengine's init_dist (NCCL) handles it
    if launcher != 'pytorch':
        raise ValueError(
            f'launcher {launcher!r} needs CUDA; without CUDA use the '
            '"pytorch" launcher (torchrun, e.g. tools/dist_train.sh)')
    missing = [k for k in _TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise KeyError(f'launcher "pytorch" expects torchrun\'s environment '
                       f'variables; missing: {missing}')
    rank = int(os.environ['RANK'])
    world_size = int(os.environ['WORLD_SIZE'])

    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = datetime.timedelta(seconds=dist_cfg.get('timeout', 1800))
        torch_dist.init_process_group(
            backend='gloo', init_method='env://', rank=rank,
            world_size=world_size, timeout=timeout)

    wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    from sera_mm.registry import MODEL_WRAPPERS
    wrapper_type = MODEL_WRAPPERS.get(
        wrapper_cfg.setdefault('type', 'MMDistributedDataParallel'))
    if isinstance(wrapper_type, type) and issubclass(
            wrapper_type, DistributedDataParallel):
        wrapper_cfg['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper_cfg

    replaced = revert_sync_bn_in_config(cfg)
    if replaced:
        print_log(f'SyncBN needs CUDA; using BN on CPU at: {replaced}',
                  logger='current', level=logging.WARNING)
    print_log(f'CPU distributed: gloo process group, rank {rank}, '
              f'world_size {world_size}', logger='current')
    return True


def cleanup_distributed(barrier: bool = True) -> None:
    """Tear the process group down (barrier first when ``barrier``), so no
    rank aborts at exit. A no-op when no group is initialised."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    if barrier:
        torch_dist.barrier()
    torch_dist.destroy_process_group()
