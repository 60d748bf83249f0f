"""The benchmark behind ``tools/analysis/benchmark.py``: performance of a
SERA model against its bare encoders.

The model is built with random weights of the configured geometry (no
download). Every figure is measured for two subjects on the same
synthetic input: the whole segmentor (``'sera'``) and the text encoder +
backbone with its adapters removed (``'bare'``). Figures: inference
latency (median of ``runs`` after ``warmup`` runs), throughput (images/s),
one training step (forward loss, backward and the config's optimizer
wrapper as training builds it, with its parameter groups and clipping;
the bare encoders' stand-in: a plain AdamW on the trainable parameters),
peak memory, FLOPs (mmengine's analyser; one multiply-add
counts as one FLOP) and parameter counts.

Modules:

* :mod:`.plan`: the config edits of the sweeps and the list of jobs;
* :mod:`.subjects`: building the subjects, the synthetic batches and
  :class:`~.subjects.StepBuilder` (one inference / training step as a
  closure);
* :mod:`.measure`: peak memory, timing, FLOPs, memory over steps;
* :mod:`.profiling`: the training step by part and by operator;
* :mod:`.run`: the measuring jobs, in this process or a spawned one;
* :mod:`.stats`: ratios, spreads and per-pair ratios;
* :mod:`.report`: ``benchmark.md`` / ``.csv`` / ``.png``, ``compare.md``,
  ``profile.md``, ``ops.md``;
* :mod:`.cli`: the command line.
"""
