"""Runner hooks: PET checkpoints, prediction dumps, state digests."""
from .pet_checkpoint_hook import PETCheckpointHook
from .prediction_dump_hook import PredictionDumpHook
from .state_digest_hook import StateDigestHook

__all__ = ['PETCheckpointHook', 'PredictionDumpHook', 'StateDigestHook']
from .refer_visualization_hook import ReferVisualizationHook  # noqa: E402

__all__ += ['ReferVisualizationHook']
