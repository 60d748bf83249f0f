"""Config edits shared by ``tools/train.py``, ``tools/test.py`` and
``tools/infer.py`` (mmseg's command-line behaviour, plus CPU specifics)."""
import ast
import logging
import os.path as osp
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from sera_mm.utils.config_utils import apply_input_size

from .pet_checkpoint import is_pet_checkpoint, read_checkpoint


def _missing_bases(path: str) -> List[str]:
    """The ``_base_`` files named in the config ``path`` that do not exist
    (relative names resolved against its folder; best effort: a
    ``_base_`` that is not a literal string or list is skipped)."""
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return []
    names: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            names += [value] if isinstance(value, str) else [
                v for v in value if isinstance(v, str)]
    folder = osp.dirname(osp.abspath(path))
    return [n for n in names
            if '::' not in n and not osp.isfile(osp.join(folder, n))]


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file, merge ``--cfg-options`` into it and apply its
    ``input_size`` (:func:`sera_mm.utils.config_utils.apply_input_size`).

    Raises:
        FileNotFoundError: ``path`` does not exist, or a ``_base_`` file it
            inherits is missing (both named).
        ValueError: the config (or a file it inherits) is not valid
            Python, or running it fails (an undefined name, a
            ``custom_imports`` module that is not there); the message
            names the file and the error.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as err:
        try:
            with open(path, encoding='utf-8') as f:
                compile(f.read(), path, 'exec')
            where = f'a _base_ file that config {path} inherits'
        except SyntaxError:
            where = f'config {path}'
        except (OSError, ValueError):
            where = f'config {path} (or a file it inherits)'
        line = f', line {err.lineno}' if err.lineno else ''
        raise ValueError(f'{where} is not valid Python ({err.msg}{line}); '
                         'expected an mmengine config file') from err
    except FileNotFoundError as err:
        if err.filename:
            raise FileNotFoundError(
                f'config {path}: file not found: {err.filename}') from err
        missing = _missing_bases(path)
        raise FileNotFoundError(
            f'config {path}: a _base_ file it inherits was not found'
            + (f': {", ".join(missing)} (relative to '
               f'{osp.dirname(osp.abspath(path))})' if missing else
               f' ({err.strerror or err})')) from err
    except (NameError, ImportError, AttributeError) as err:
        raise ValueError(f'config {path}: running it failed '
                         f'({type(err).__name__}: {err})') from err
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    apply_input_size(cfg)
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


def take_compile_options(cfg: Config) -> Optional[dict]:
    """Remove mmengine's ``compile`` key from ``cfg`` and return the
    ``torch.compile`` options it asked for (``{}`` for ``True``, None when
    absent or false).

    mmengine compiles the whole ``train_step``, optimizer step included,
    which ``torch.compile`` cannot trace through mmengine's optimizer
    wrapper; :func:`compile_model_methods` compiles the model's loss
    instead, so the key keeps its meaning.

    Raises:
        TypeError: ``compile`` is neither a bool nor a dict.
    """
    value = cfg.pop('compile', None)
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise TypeError('config key "compile" must be a bool or a dict of '
                    f'torch.compile options, got {type(value).__name__}')


def check_compile_supported(torch_dir: Optional[str] = None) -> None:
    """Raise a clear error where ``torch.compile`` cannot work on this
    install: torch's inductor builds C++ with ``-L<torch>/lib`` unquoted, so
    a torch installed under a folder whose path has whitespace (a virtual
    environment in ``My Projects/...``) fails to link (``cannot find
    -ltorch``) in the middle of the first compiled step.

    Args:
        torch_dir: torch's package folder (default: the installed one).

    Raises:
        RuntimeError: the path has whitespace; the message names it.
    """
    if torch_dir is None:
        torch_dir = osp.dirname(osp.abspath(torch.__file__))
    if any(ch.isspace() for ch in torch_dir):
        raise RuntimeError(
            f'torch.compile cannot build its C++ kernels here: torch is '
            f'installed under a path with whitespace ({torch_dir!r}), which '
            f'its compiler command does not quote. Create the virtual '
            f'environment under a path without spaces, or train without '
            f'--compile (the config key compile).')


def compile_model_methods(model: torch.nn.Module,
                          names: Sequence[str] = ('loss', ),
                          options: Optional[dict] = None) -> torch.nn.Module:
    """Replace the methods ``names`` of ``model`` (the module inside a
    distributed wrapper) by their ``torch.compile`` versions, in place.

    Returns:
        The module whose methods were compiled.

    Raises:
        AttributeError: the model has no method of one of those names.
        RuntimeError: torch.compile cannot work on this install
            (:func:`check_compile_supported`).
    """
    from mmengine.model import is_model_wrapper
    inner = model.module if is_model_wrapper(model) else model
    methods = {}
    for name in names:
        method = getattr(inner, name, None)
        if not callable(method):
            raise AttributeError(f'{type(inner).__name__} has no method '
                                 f'{name!r} to compile')
        methods[name] = method
    check_compile_supported()
    for name, method in methods.items():
        setattr(inner, name, torch.compile(method, **(options or {})))
    return inner


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


def checkpoint_to_load(cfg: Config) -> Optional[str]:
    """The local checkpoint file a training Runner built from ``cfg`` will
    read: ``load_from`` (resumed from or loaded), else with ``resume=True``
    the latest one of the work dir (its ``last_checkpoint`` file, as
    mmengine finds it); None when there is none or it is a URL."""
    path = cfg.get('load_from')
    if path is None and cfg.get('resume'):
        pointer = osp.join(cfg.work_dir, 'last_checkpoint')
        if osp.isfile(pointer):
            with open(pointer, encoding='utf-8') as f:
                path = f.read().strip() or None
    if path is None or '://' in str(path):
        return None
    return str(path)


def check_checkpoint_to_load(cfg: Config) -> Optional[str]:
    """Read the checkpoint :func:`checkpoint_to_load` names once, before the
    Runner is built, so that a missing, truncated or unsafe file is a clear
    error naming it (mmengine's own load reports a bare torch error, or none
    naming the file).

    Returns:
        The checkpoint path, or None.

    Raises:
        FileNotFoundError, CheckpointReadError, UnsafeCheckpointError,
        CheckpointMismatchError: see
            :func:`~sera_mm.engine.pet_checkpoint.read_checkpoint`.
    """
    path = checkpoint_to_load(cfg)
    if path is not None:
        read_checkpoint(path)  # the loaded dict is dropped at once
    return path


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


def enable_auto_scale_lr(cfg: Config, config_path: str = 'the config'
                         ) -> None:
    """Turn on mmengine's linear learning-rate scaling (mmseg's
    ``--auto-scale-lr``): the Runner multiplies every learning rate by
    ``total batch / auto_scale_lr.base_batch_size``, the total batch being
    the number of processes times ``train_dataloader.batch_size``.

    Raises:
        ValueError: the config has no ``auto_scale_lr.base_batch_size``
            (the batch its recipe was set for).
    """
    scale = cfg.get('auto_scale_lr')
    if not scale or not scale.get('base_batch_size'):
        raise ValueError(
            f'--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N)'
            f' in {config_path}: the total batch its learning rate was set '
            f'for')
    scale['enable'] = True


def write_run_record(runner, filename: str = 'run_record.json') -> str:
    """Write the seed the runner actually used (its configured seed, or
    the one it drew), the process count and the total batch to
    ``<work_dir>/<filename>`` (main process only); returns the path."""
    from mmengine.dist import get_world_size, is_main_process

    from sera_mm.utils.file_io import atomic_write_json
    path = osp.join(runner.work_dir, filename)
    if not is_main_process():
        return path
    randomness = dict(runner.cfg.get('randomness') or {})
    loader = runner.cfg.get('train_dataloader') or {}
    world = get_world_size()
    per_gpu = loader.get('batch_size')
    scale = runner.cfg.get('auto_scale_lr') or {}
    atomic_write_json(
        dict(seed=runner.seed,
             deterministic=bool(randomness.get('deterministic', False)),
             diff_rank_seed=bool(randomness.get('diff_rank_seed', False)),
             world_size=world,
             batch_per_process=per_gpu,
             total_batch=None if per_gpu is None else world * per_gpu,
             auto_scale_lr=bool(scale.get('enable', False)),
             base_batch_size=scale.get('base_batch_size')), path)
    return path


def load_best_checkpoint(runner) -> dict:
    """Load the best checkpoint a ``CheckpointHook`` with ``save_best``
    kept during training into ``runner.model``, for the final evaluation.

    With several ``save_best`` metrics the first one's best checkpoint is
    used. Rank 0 decides and tells the others (every rank evaluates the same
    weights); every rank must then be able to read the file (a shared file
    system). An ``EMAHook`` swaps its averaged weights in at test time, over
    whatever is loaded: a warning says so.

    Returns:
        ``{'weights': 'best', 'checkpoint': path}`` after loading it, or
        ``{'weights': 'last', 'checkpoint': None}`` (no best checkpoint
        kept: the weights training ended with are evaluated).

    Raises:
        FileNotFoundError: rank 0 has the best checkpoint and this rank
            cannot read it.
    """
    from mmengine.dist import broadcast_object_list, get_world_size

    from .pet_checkpoint import load_checkpoint_any
    best = None
    for hook in runner.hooks:
        path = getattr(hook, 'best_ckpt_path', None)
        if not path:
            paths = getattr(hook, 'best_ckpt_path_dict', None) or {}
            path = next((p for p in paths.values() if p), None)
        if path:
            best = str(path)
            break
    decision = [best if best is not None and osp.isfile(best) else None]
    if get_world_size() > 1:
        broadcast_object_list(decision, src=0)
    best = decision[0]
    if best is None:
        return dict(weights='last', checkpoint=None)
    if not osp.isfile(best):
        raise FileNotFoundError(
            f'the best checkpoint {best} chosen on rank 0 cannot be read on '
            f'this rank: the final evaluation needs it on a file system '
            f'every rank shares')
    if any(type(h).__name__ == 'EMAHook' for h in runner.hooks):
        print_log('the final evaluation loads the best checkpoint, but '
                  'EMAHook swaps in its averaged weights at test time',
                  logger='current', level=logging.WARNING)
    load_checkpoint_any(runner.model, best)
    print_log(f'final evaluation with the best checkpoint {best}',
              logger='current')
    return dict(weights='best', checkpoint=best)


__all__ = [
    'check_compile_supported', 'enable_auto_scale_lr', 'write_run_record', 'load_best_checkpoint',
    'load_config', 'resolve_work_dir', 'enable_amp', 'enable_visualization',
    'take_compile_options', 'compile_model_methods',
    'add_custom_hook', 'adopt_checkpoint_seed', 'checkpoint_to_load',
    'check_checkpoint_to_load'
]
