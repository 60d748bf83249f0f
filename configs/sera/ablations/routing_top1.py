# Ablation row "routing_top1": hard routing. Every router (adapters and
# SERA-Fusion levels) keeps only its largest weight (top_k=1). The kept
# weight is the chosen expert's softmax probability (Switch-Transformer
# gate), so the router trains; the load-balancing loss is computed from the
# pre-top-k probabilities. Only the chosen expert runs for each sample.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    backbone=dict(adapter=dict(router=dict(top_k=1))),
    neck=dict(router=dict(top_k=1)))
