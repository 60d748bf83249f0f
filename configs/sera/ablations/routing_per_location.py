# Ablation row "routing_per_location": every router (adapters and
# SERA-Fusion levels) gives each grid location its own expert weights,
# (B, E, h, w): the sentence projection is broadcast over the grid and the
# visual projection applied at every location. Statistics report the
# weights averaged over locations.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    backbone=dict(adapter=dict(router=dict(per_location=True))),
    neck=dict(router=dict(per_location=True)))
