"""Training one run of the table in a subprocess, and counting the
parameters of its model.

Every run is ``python tools/train.py CFG --work-dir <work dir>
--test-splits <splits> [--resume] --cfg-options ... [randomness.seed=k]``
(:func:`.plan.train_command`). Beside the metrics,
``<work dir>/ablation_run.json`` records the command, the trainable /
total parameter counts and the wall time of every attempt, updated every
``heartbeat`` seconds while a run is in progress, so the time of an
interrupted attempt is kept. The reported time is the wall time of
``tools/train.py``: training plus the final evaluation of the splits.
"""
import argparse
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .plan import ROOT, RunSpec, run_status, train_command
from .provenance import cpu_threads, git_commit
from .records import (config_seed, load_run_info, save_run_info,
                      total_wall_time)

ParamCounter = Callable[[str, Sequence[str]], Tuple[int, int]]



def recorded_command(cmd: Sequence[str]) -> List[str]:
    """``cmd`` as the run record keeps it: the interpreter by its name and
    paths inside the checkout relative to it, so a record names no folder
    of the machine that ran it."""
    root = os.path.abspath(ROOT) + os.sep
    out = [os.path.basename(cmd[0])] if cmd else []
    for arg in cmd[1:]:
        out.append(arg[len(root):] if isinstance(arg, str) and
                   arg.startswith(root) else arg)
    return out

def parse_cfg_options(options: Sequence[str]) -> dict:
    """``['a.b=1', 'c=[1,2]']`` -> dict, as ``--cfg-options`` parses them."""
    if not options:
        return {}
    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='opts')(None, namespace, list(options))
    return dict(namespace.opts)


def count_parameters(config: str,
                     cfg_options: Sequence[str] = ()) -> Tuple[int, int]:
    """(trainable, total) parameters of a config's model, built with random
    weights (the counts do not depend on the weights)."""
    if ROOT not in sys.path:  # configs may import ``projects.*`` modules
        sys.path.insert(0, ROOT)
    from sera_mm.utils import setup_runtime
    setup_runtime()  # mmcv.ops fallback, checkpoint safe globals
    from mmengine.config import Config

    from sera_mm.models.utils import count_parameters as count
    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    from sera_mm.utils.config_utils import random_init_cfg
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    options = parse_cfg_options(cfg_options)
    if options:
        cfg.merge_from_dict(options)
    counts = count(MODELS.build(random_init_cfg(cfg.model, force=True)))
    return counts['trainable'], counts['total']


def execute_run(run: RunSpec, splits: Sequence[str],
                cfg_options: Sequence[str] = (),
                python: str = sys.executable,
                param_counter: Optional[ParamCounter] = None,
                heartbeat: float = 30.0) -> int:
    """Train + evaluate one run (resuming if possible), recording its wall
    time and parameter counts in ``<work_dir>/ablation_run.json``.

    Args:
        param_counter: ``(config, cfg_options) -> (trainable, total)``;
            default :func:`count_parameters`.

    Returns:
        the exit status of ``tools/train.py`` (0 when already done).
    """
    status = run_status(run.work_dir)
    if status == 'done':
        return 0
    os.makedirs(run.work_dir, exist_ok=True)
    info = load_run_info(run.work_dir)
    info.update(row=run.row, config=run.config, seed=run.seed,
                splits=list(splits))
    if 'effective_seed' not in info:
        try:
            info['effective_seed'] = (run.seed if run.seed is not None else
                                      config_seed(run.config))
        except Exception as e:  # pairing falls back to the config later
            print(f'[ablations] {run.row}: seed lookup failed: {e!r}')
    param_counter = param_counter or count_parameters
    if 'trainable_params' not in info:
        try:
            info['trainable_params'], info['total_params'] = param_counter(
                run.config, cfg_options)
        except Exception as e:  # counting must never block the run
            print(f'[ablations] {run.row}: parameter count failed: {e!r}')
    cmd = train_command(run, splits, cfg_options, status == 'resume', python)
    attempt = dict(
        start=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        resumed=status == 'resume', command=recorded_command(cmd),
        wall_s=0.0,
        returncode=None, commit=git_commit(), threads=cpu_threads())
    info.setdefault('attempts', []).append(attempt)
    save_run_info(info, run.work_dir)
    print(f'[ablations] {run.row} ({os.path.basename(run.work_dir)}): '
          f'{"resuming" if status == "resume" else "starting"}\n  ' +
          ' '.join(cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        while True:
            try:
                rc = proc.wait(timeout=heartbeat)
                break
            except subprocess.TimeoutExpired:
                attempt['wall_s'] = time.monotonic() - start
                save_run_info(info, run.work_dir)
    except BaseException:  # Ctrl-C: stop the child, keep the time
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        attempt['wall_s'] = time.monotonic() - start
        attempt['returncode'] = proc.returncode
        save_run_info(info, run.work_dir)
        raise
    attempt['wall_s'] = time.monotonic() - start
    attempt['returncode'] = rc
    info['wall_time_s'] = total_wall_time(info)
    save_run_info(info, run.work_dir)
    return rc


def fill_missing_params(runs: Sequence[RunSpec],
                        cfg_options: Sequence[str] = (),
                        param_counter: Optional[ParamCounter] = None
                        ) -> None:
    """Record parameter counts for finished runs whose
    ``ablation_run.json`` lacks them (e.g. runs made by hand);
    ``param_counter`` defaults to :func:`count_parameters`."""
    param_counter = param_counter or count_parameters
    counted: Dict[str, Tuple[int, int]] = {}
    for run in runs:
        if run_status(run.work_dir) != 'done':
            continue
        info = load_run_info(run.work_dir)
        if 'trainable_params' in info:
            continue
        if run.config not in counted:
            counted[run.config] = param_counter(run.config, cfg_options)
        info.update(row=run.row, config=run.config, seed=run.seed)
        info['trainable_params'], info['total_params'] = counted[run.config]
        save_run_info(info, run.work_dir)
