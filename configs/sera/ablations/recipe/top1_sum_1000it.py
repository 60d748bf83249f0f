# Recipe search for the 15-minute main job: a cheaper step spent on
# iterations. Every router keeps only its top expert per sample (top-1, so
# one expert runs per sample in the adapters and the SERA-Fusion levels) and
# the fusion neck sums its levels with learned softmax weights instead of
# a 3x3 conv over their concatenation; together a training step takes 0.80x
# the main job's (8 interleaved pairs, 0.65-0.93; benchmark.py
# --compare-vary), so 1,000 iterations take about the time of its 800.
# Same warm-up, cosine decay to the new end.
_base_ = '../../sera_mnv2-minilm_synthetic_800it.py'
max_iters = 1000
model = dict(
    backbone=dict(adapter=dict(router=dict(top_k=1))),
    neck=dict(router=dict(top_k=1), aggregate='sum'))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50,
         end=max_iters, T_max=max_iters - 50, eta_min=1e-5)
]
train_cfg = dict(max_iters=max_iters)
