"""The files a run leaves in its work dir, read and written.

* ``final_metrics.json``: ``{split: {metric: value}}`` (``tools/train.py``);
* ``ablation_run.json``: what the runner records (command, seed,
  parameter counts, and per attempt its start, wall time, exit status,
  commit and CPU threads);
* ``per_sample/<split>.csv``: one line per evaluated expression
  (``sent_id, ref_id, expr_type, intersection, union, iou``, and
  ``image_id`` where the metric writes it), read into
  :class:`SampleRecord`.
"""
import csv
import json
import os
import os.path as osp
from typing import Dict, NamedTuple, Optional

from .plan import METRICS_FILE, RunSpec

RUN_FILE = 'ablation_run.json'
PER_SAMPLE_DIR = 'per_sample'  # as sera_mm.engine.final_evaluation


def read_json(path: str) -> Optional[dict]:
    """The JSON object in ``path``, or None when the file is absent."""
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_json(data: dict, path: str) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a
    file)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def load_metrics(work_dir: str) -> Optional[dict]:
    """``final_metrics.json`` of a work dir, or None (run not finished)."""
    return read_json(osp.join(work_dir, METRICS_FILE))


def load_run_info(work_dir: str) -> dict:
    """``ablation_run.json`` of a work dir ({} when absent)."""
    return read_json(osp.join(work_dir, RUN_FILE)) or {}


def save_run_info(info: dict, work_dir: str) -> None:
    """Write ``ablation_run.json`` of a work dir."""
    write_json(info, osp.join(work_dir, RUN_FILE))


def total_wall_time(info: dict) -> Optional[float]:
    """Sum of the wall times of all recorded attempts, or None."""
    attempts = info.get('attempts') or []
    times = [a.get('wall_s') for a in attempts if a.get('wall_s') is not None]
    return float(sum(times)) if times else None


def first_commit(info: dict) -> Optional[str]:
    """The commit of a run's first attempt that recorded one (a resumed
    run keeps the commit it started at)."""
    return next((a.get('commit') for a in info.get('attempts', [])
                 if a.get('commit')), None)


def config_seed(config: str) -> Optional[int]:
    """``randomness.seed`` of a config, or None."""
    from mmengine.config import Config
    seed = (Config.fromfile(config).get('randomness') or {}).get('seed')
    return None if seed is None else int(seed)


def effective_seed(run: RunSpec) -> Optional[int]:
    """The seed a run trained with: its ``--seeds`` value, else the one its
    ``ablation_run.json`` recorded, else its config's (None when the
    config cannot be read: such a run is not paired)."""
    if run.seed is not None:
        return run.seed
    info = load_run_info(run.work_dir)
    if info.get('effective_seed') is not None:
        return int(info['effective_seed'])
    try:
        return config_seed(run.config)
    except Exception:  # an unreadable config: cannot pair it
        return None


class SampleRecord(NamedTuple):
    """One evaluated expression of a run.

    Attributes:
        iou: its IoU (0-1).
        expr_type: its expression type, or None.
        image_id: the image it refers into, or None when the file has no
            ``image_id`` column (or an empty cell).
        ref_id: the referred object, or None likewise.
    """
    iou: float
    expr_type: Optional[str] = None
    image_id: Optional[str] = None
    ref_id: Optional[str] = None


def read_per_sample(work_dir: str,
                    split: str) -> Optional[Dict[str, SampleRecord]]:
    """``{sent_id: SampleRecord}`` of a finished run's split, from
    ``<work_dir>/per_sample/<split>.csv``; None when the file is absent."""
    path = osp.join(work_dir, PER_SAMPLE_DIR, f'{split}.csv')
    if not osp.isfile(path):
        return None
    out = {}
    with open(path, newline='') as f:
        for rec in csv.DictReader(f):
            out[rec['sent_id']] = SampleRecord(
                float(rec['iou']), rec.get('expr_type') or None,
                rec.get('image_id') or None, rec.get('ref_id') or None)
    return out
