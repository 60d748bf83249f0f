"""SERA-MM registries: children of MMSegmentation's, so a config with
``default_scope='sera_mm'`` builds both SERA's and mmseg's (and mmengine's)
components."""
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import Registry
from mmseg.registry import DATA_SAMPLERS as MMSEG_DATA_SAMPLERS
from mmseg.registry import DATASETS as MMSEG_DATASETS
from mmseg.registry import EVALUATOR as MMSEG_EVALUATOR
from mmseg.registry import HOOKS as MMSEG_HOOKS
from mmseg.registry import LOG_PROCESSORS as MMSEG_LOG_PROCESSORS
from mmseg.registry import LOOPS as MMSEG_LOOPS
from mmseg.registry import METRICS as MMSEG_METRICS
from mmseg.registry import MODEL_WRAPPERS as MMSEG_MODEL_WRAPPERS
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMSEG_OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E501
from mmseg.registry import OPTIM_WRAPPERS as MMSEG_OPTIM_WRAPPERS
from mmseg.registry import OPTIMIZERS as MMSEG_OPTIMIZERS
from mmseg.registry import PARAM_SCHEDULERS as MMSEG_PARAM_SCHEDULERS
from mmseg.registry import RUNNERS as MMSEG_RUNNERS
from mmseg.registry import TASK_UTILS as MMSEG_TASK_UTILS
from mmseg.registry import TRANSFORMS as MMSEG_TRANSFORMS
from mmseg.registry import VISBACKENDS as MMSEG_VISBACKENDS
from mmseg.registry import VISUALIZERS as MMSEG_VISUALIZERS
from mmseg.registry import WEIGHT_INITIALIZERS as MMSEG_WEIGHT_INITIALIZERS

RUNNERS = Registry('runner', parent=MMSEG_RUNNERS, scope='sera_mm')
LOOPS = Registry('loop', parent=MMSEG_LOOPS, scope='sera_mm',
                 locations=['sera_mm.engine'])
HOOKS = Registry('hook', parent=MMSEG_HOOKS, scope='sera_mm',
                 locations=['sera_mm.engine'])
DATASETS = Registry('dataset', parent=MMSEG_DATASETS, scope='sera_mm',
                    locations=['sera_mm.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMSEG_DATA_SAMPLERS,
                         scope='sera_mm', locations=['sera_mm.datasets'])
#: Functions configs name by type, e.g. a dataloader's ``collate_fn``
#: (``dict(type='sera_mm.refer_collate')``: mmengine's runner looks them
#: up in its root registry, which reaches this node by the scope prefix).
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope='sera_mm',
                     locations=['sera_mm.datasets'])
TRANSFORMS = Registry('transform', parent=MMSEG_TRANSFORMS, scope='sera_mm',
                      locations=['sera_mm.datasets'])
MODELS = Registry('model', parent=MMSEG_MODELS, scope='sera_mm',
                  locations=['sera_mm.models'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMSEG_MODEL_WRAPPERS,
                          scope='sera_mm', locations=['sera_mm.models'])
WEIGHT_INITIALIZERS = Registry('weight initializer',
                               parent=MMSEG_WEIGHT_INITIALIZERS,
                               scope='sera_mm', locations=['sera_mm.models'])
OPTIMIZERS = Registry('optimizer', parent=MMSEG_OPTIMIZERS, scope='sera_mm',
                      locations=['sera_mm.engine'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMSEG_OPTIM_WRAPPERS,
                          scope='sera_mm', locations=['sera_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMSEG_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='sera_mm', locations=['sera_mm.engine'])
PARAM_SCHEDULERS = Registry('parameter scheduler',
                            parent=MMSEG_PARAM_SCHEDULERS, scope='sera_mm',
                            locations=['sera_mm.engine'])
METRICS = Registry('metric', parent=MMSEG_METRICS, scope='sera_mm',
                   locations=['sera_mm.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMSEG_EVALUATOR, scope='sera_mm',
                     locations=['sera_mm.evaluation'])
TASK_UTILS = Registry('task util', parent=MMSEG_TASK_UTILS, scope='sera_mm',
                      locations=['sera_mm.models'])
VISUALIZERS = Registry('visualizer', parent=MMSEG_VISUALIZERS,
                       scope='sera_mm', locations=['sera_mm.visualization'])
VISBACKENDS = Registry('vis_backend', parent=MMSEG_VISBACKENDS,
                       scope='sera_mm', locations=['sera_mm.visualization'])
LOG_PROCESSORS = Registry('log_processor', parent=MMSEG_LOG_PROCESSORS,
                          scope='sera_mm', locations=['sera_mm.engine'])
