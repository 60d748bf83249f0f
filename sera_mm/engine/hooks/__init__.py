"""Runner hooks: PET checkpoints, prediction dumps, state digests, router
temperature and routing diagnostics."""
from .pet_checkpoint_hook import PETCheckpointHook
from .prediction_dump_hook import PredictionDumpHook
from .router_hooks import RouterStatsHook, RouterTemperatureHook
from .state_digest_hook import StateDigestHook

__all__ = ['PETCheckpointHook', 'PredictionDumpHook', 'StateDigestHook',
           'RouterStatsHook', 'RouterTemperatureHook']
from .refer_visualization_hook import ReferVisualizationHook  # noqa: E402

__all__ += ['ReferVisualizationHook']
