# Long-schedule row "routing_uniform_2h": ablation row "routing_uniform"
# (every router gives every expert 1/E) on the 2-hour schedule of
# sera_mnv2-minilm_synthetic_2h.py. Paired with full_2h.
_base_ = '../../sera_mnv2-minilm_synthetic_2h.py'
model = dict(
    backbone=dict(adapter=dict(router=dict(mode='uniform'))),
    neck=dict(router=dict(mode='uniform')))
