# Ablation row "routing_uniform": no routing. Every router (the one in each
# SERA-Adapter and the one per SERA-Fusion level) gives every expert the
# weight 1/E; the experts stay, the routers own no parameters and their
# balance loss is 0.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    backbone=dict(adapter=dict(router=dict(mode='uniform'))),
    neck=dict(router=dict(mode='uniform')))
