"""Benchmark a SERA config against its bare frozen encoders.

    python tools/analysis/benchmark.py CONFIG [--batch-size 2]
        [--throughput-batch 8] [--input-size N] [--runs 5] [--warmup 2]
        [--threads 2] [--amp] [--channels-last]
        [--sweep input_size=320,416,512] [--sweep num_experts=1,2,4]
        [--sweep adapter_layers=0,2,6] [--sweep batch=1,2,4]
        [--out-dir DIR] [--skip-train] [--no-flops] [--no-paired]
        [--isolation process|none]
        [--cfg-options key=value ...]
    python tools/analysis/benchmark.py CONFIG --profile [--profile-ops N]
    python tools/analysis/benchmark.py CONFIG --memory-steps N
    python tools/analysis/benchmark.py CONFIG (--compare-options K=V ... |
        --compare-config OTHER | --compare-amp | --compare-channels-last |
        --compare-compile)
        [--compare-kind train|infer] [--compare-vary]

Writes ``benchmark.md``, ``benchmark.csv`` and ``benchmark.png`` to
``--out-dir`` (default ``work_dirs/benchmark/<config name>``);
``--profile`` writes ``profile.md`` (and ``ops.md``), ``--compare-*``
``compare.md``. The benchmark is the package ``tools/analysis/benchmark``
(plan, subjects, measure, profiling, run, stats, report); this script is
its command line (the package's ``cli`` module documents every figure).
"""
import os.path as osp
import sys

# the package beside this script (a tool, not part of the runtime package)
_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
# project configs import ``projects.*`` modules (custom_imports)
_ROOT = osp.dirname(osp.dirname(_HERE))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from benchmark.cli import main  # noqa: E402

if __name__ == '__main__':
    from sera_mm.utils.cli import run_cli
    run_cli(main)
