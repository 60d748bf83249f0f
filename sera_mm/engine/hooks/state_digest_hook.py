"""``StateDigestHook``: record per-rank digests of the model state, to check
that data-parallel ranks hold the same model."""
import json
import os.path as osp
from typing import Dict

from mmengine.hooks import Hook

from sera_mm.registry import HOOKS
from ..pet_checkpoint import state_digest, trainable_keys, unwrap_model


@HOOKS.register_module()
class StateDigestHook(Hook):
    """Write ``<work_dir>/state_digest_rank<r>.json`` on every rank.

    The file holds, for ``before_train`` and ``after_train``, the SHA-256 of
    the trainable parameters (``trainable``) and of the whole state dict
    (``full``), computed by :func:`sera_mm.engine.pet_checkpoint.state_digest`
    (name, dtype, shape and bytes of each tensor). After a data-parallel run
    every rank's ``after_train`` digests must be equal, and the trainable
    digest equals that of the trainable tensors in the final checkpoint.

    Args:
        filename_tmpl: file name inside ``work_dir``; ``{rank}`` is filled.
    """

    priority = 'LOWEST'

    def __init__(self,
                 filename_tmpl: str = 'state_digest_rank{rank}.json') -> None:
        if '{rank}' not in filename_tmpl:
            raise ValueError('filename_tmpl must contain "{rank}", got '
                             f'{filename_tmpl!r}')
        self.filename_tmpl = filename_tmpl
        self.record: Dict[str, object] = {}

    def _digest(self, runner) -> Dict[str, str]:
        model = unwrap_model(runner.model)
        state = model.state_dict()
        return dict(trainable=state_digest(state, trainable_keys(model)),
                    full=state_digest(state))

    def _write(self, runner) -> None:
        path = osp.join(runner.work_dir,
                        self.filename_tmpl.format(rank=runner.rank))
        with open(path, 'w') as f:
            json.dump(self.record, f, indent=2)

    def before_train(self, runner) -> None:
        self.record = dict(rank=runner.rank, world_size=runner.world_size,
                           before_train=self._digest(runner))
        self._write(runner)

    def after_train(self, runner) -> None:
        self.record['after_train'] = self._digest(runner)
        self.record['iter'] = runner.iter
        self._write(runner)
