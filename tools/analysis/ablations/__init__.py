"""The ablation runner behind ``tools/analysis/run_ablations.py``.

It trains and evaluates every ablation config in turn (resumably), then
collects the metrics into one Markdown and one CSV table, and compares
every row with a reference row on the same evaluation expressions.

Modules:

* :mod:`.plan`: which runs a table needs (rows, seeds, work dirs), what
  state each is in (finished, resumable, new) and its ``tools/train.py``
  command line;
* :mod:`.records`: the files a run leaves in its work dir
  (``final_metrics.json``, ``ablation_run.json``, ``per_sample/*.csv``);
* :mod:`.provenance`: the commit and CPU threads recorded per attempt;
* :mod:`.run`: training one run in a subprocess (heartbeat, Ctrl-C, wall
  time) and counting parameters;
* :mod:`.stats`: the Student-t interval (``scipy.stats.t``) and the
  cluster bootstrap;
* :mod:`.summary`: per-row means and seed standard deviations, and the
  seed-variation check;
* :mod:`.compare`: the paired comparisons of every row with the
  reference, seed by seed;
* :mod:`.report`: ``ablations.md`` / ``ablations.csv`` and ``paired.md``
  / ``paired.csv``;
* :mod:`.cli`: the command line.

The bootstrap resamples clusters, not expressions: see :mod:`.stats`.
"""
