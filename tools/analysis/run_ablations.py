"""Run the ablation table: train + evaluate every ablation config in turn,
then collect the metrics into one Markdown and one CSV table and compare
every row with a reference row on the same expressions.

    python tools/analysis/run_ablations.py \
        [--configs configs/sera/ablations/*.py] \
        [--seeds 0 1 2] [--seed-rows full] \
        [--work-root work_dirs/ablations] [--splits val testB] \
        [--out docs/ablations] [--dry-run | --table-only] \
        [--cfg-options key=value ...] [--reference full] [--bootstrap 2000]

Rows named in ``--seed-rows`` run once per ``--seeds`` value (work dir
``<work-root>/<row>_seed<k>``); the others once at the config's seed.
Finished runs (``final_metrics.json``) are skipped, interrupted ones
(``last_checkpoint``) resumed. Writes ``<out>/ablations.md`` /
``ablations.csv`` (mean +- seed std per row) and ``<out>/paired.md`` /
``paired.csv`` (differences from ``--reference`` seed by seed: per seed a
95% cluster bootstrap interval that resamples images with all their
expressions, across seeds a 95% Student-t interval).

The runner is the package ``tools/analysis/ablations`` (plan, run,
statistics, report); this script is its command line.
"""
import os.path as osp
import sys

_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:  # the package beside this script
    sys.path.insert(0, _HERE)

from ablations.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
