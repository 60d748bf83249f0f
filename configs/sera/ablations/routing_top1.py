# Ablation row "routing_top1": hard routing. Every router (adapters and
# SERA-Fusion levels) keeps only its largest weight (top_k=1), so one
# expert runs per sample instead of a soft mixture.
_base_ = '../sera_mnv2-minilm_synthetic.py'
model = dict(
    backbone=dict(adapter=dict(router=dict(top_k=1))),
    neck=dict(router=dict(top_k=1)))
