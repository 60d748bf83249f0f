"""``PETCheckpointHook``: mmengine's CheckpointHook that saves PET checkpoints
atomically and checks PET checkpoints it resumes from."""
from typing import Dict, Sequence, Set

import torch
from mmengine.hooks import CheckpointHook
from mmengine.runner.checkpoint import find_latest_checkpoint

from sera_mm.registry import HOOKS
from sera_mm.utils.file_io import ATOMIC_BACKEND_NAME
from ..pet_checkpoint import (PET_META_KEY, PRETRAINED_CFG_KEYS,
                              buffer_keys, check_base_digest,
                              check_state_fits_model, is_pet_checkpoint,
                              make_pet_checkpoint_state, strip_prefix,
                              unwrap_model)


@HOOKS.register_module()
class PETCheckpointHook(CheckpointHook):
    """Save parameter-efficient checkpoints (or full ones), atomically.

    Use it in place of mmengine's hook::

        default_hooks = dict(checkpoint=dict(
            type='PETCheckpointHook', interval=2000, by_epoch=False,
            trainable_only=True))

    With ``trainable_only=True`` the saved ``state_dict`` keeps only the
    parameters with ``requires_grad`` and the buffers that changed since
    training began (or that a resumed PET checkpoint carried); everything
    else of mmengine's checkpoint (``meta``, ``optimizer``,
    ``param_schedulers``, ``message_hub``) is kept, so ``--resume`` from a
    PET checkpoint continues exactly as from a full one. ``meta['pet']``
    records what was kept and the pretrained weights it must be merged with
    (see :mod:`sera_mm.engine.pet_checkpoint`).

    When resuming or loading from a PET checkpoint, the checkpoint is checked
    against the model before mmengine's (lenient) loading: keys the model
    lacks, shape mismatches, trainable parameters the checkpoint lacks, and a
    base-weight digest mismatch (per ``check_base``) raise
    :class:`~sera_mm.engine.pet_checkpoint.CheckpointMismatchError`.

    Args:
        trainable_only: save PET checkpoints (True) or full ones (False).
        atomic: write every file through a temporary file + ``os.replace``
            (local ``out_dir`` only; ignored when ``backend_args`` or
            ``file_client_args`` is given).
        check_base: 'error' | 'warn' | 'ignore' for the base-weight digest
            check when loading a PET checkpoint.
        pretrained_cfg_keys: config keys naming pretrained weights, recorded
            in ``meta['pet']['pretrained']``.
        **kwargs: mmengine ``CheckpointHook`` arguments (``interval``,
            ``by_epoch``, ``max_keep_ckpts``, ``save_best``, ...).
    """

    def __init__(self,
                 *args,
                 trainable_only: bool = True,
                 atomic: bool = True,
                 check_base: str = 'error',
                 pretrained_cfg_keys: Sequence[str] = PRETRAINED_CFG_KEYS,
                 **kwargs) -> None:
        if check_base not in ('error', 'warn', 'ignore'):
            raise ValueError('check_base must be "error", "warn" or "ignore", '
                             f'got {check_base!r}')
        out_dir = kwargs.get('out_dir')
        local = out_dir is None or '://' not in str(out_dir)
        if (atomic and local and kwargs.get('backend_args') is None
                and kwargs.get('file_client_args') is None):
            kwargs['backend_args'] = dict(backend=ATOMIC_BACKEND_NAME)
        super().__init__(*args, **kwargs)
        self.trainable_only = trainable_only
        self.check_base = check_base
        self.pretrained_cfg_keys = tuple(pretrained_cfg_keys)
        self._buffer_snapshot: Dict[str, torch.Tensor] = {}
        self._carried_buffers: Set[str] = set()

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not self.trainable_only:
            return
        model = unwrap_model(runner.model)
        names = buffer_keys(model)
        self._buffer_snapshot = {
            k: v.detach().clone()
            for k, v in model.state_dict().items() if k in names
        }

    def _changed_buffers(self, model: torch.nn.Module) -> Set[str]:
        changed = set(self._carried_buffers)
        for key, value in model.state_dict().items():
            before = self._buffer_snapshot.get(key)
            if before is not None and not torch.equal(
                    before, value.detach().to(before.device)):
                changed.add(key)
        return changed

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record what the model was trained on
        (``checkpoint['meta']['trained_on']``: dataset, split, iterations,
        last validation metrics); filter ``checkpoint['state_dict']`` to its
        PET part and record ``checkpoint['meta']['pet']``."""
        from ..training_data import TRAINED_ON_KEY, describe_training_data
        metrics = {}
        try:
            for key, buf in runner.message_hub.log_scalars.items():
                if key.startswith('val/'):
                    metrics[key[4:]] = float(buf.current())
        except (AttributeError, TypeError, ValueError):
            metrics = {}
        # saving by iteration happens before the loop counts the iteration
        done = runner.iter if self.by_epoch else runner.iter + 1
        checkpoint.setdefault('meta', {})[TRAINED_ON_KEY] = \
            describe_training_data(runner.cfg, done, metrics)
        if not self.trainable_only:
            return
        model = unwrap_model(runner.model)
        state, pet_meta = make_pet_checkpoint_state(
            model,
            checkpoint['state_dict'],
            extra_buffer_keys=self._changed_buffers(model),
            model_cfg=runner.cfg.get('model'),
            cfg_keys=self.pretrained_cfg_keys)
        checkpoint['state_dict'] = state
        checkpoint.setdefault('meta', {})[PET_META_KEY] = pet_meta

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Check a PET checkpoint strictly before mmengine merges it."""
        if not is_pet_checkpoint(checkpoint):
            return
        state = strip_prefix(checkpoint['state_dict'])
        path = getattr(runner, '_load_from', None)
        if path is None and getattr(runner, '_resume', False):
            path = find_latest_checkpoint(runner.work_dir)
        source = (f'PET checkpoint "{path}"' if path else
                  'PET checkpoint being loaded')
        check_state_fits_model(runner.model, state, partial=True,
                               source=source)
        check_base_digest(runner.model, state,
                          checkpoint['meta'][PET_META_KEY],
                          mode=self.check_base, source=source)
        names = buffer_keys(runner.model)
        self._carried_buffers = {k for k in state if k in names}
