# Ablation row "routing_top2": sparse routing with two experts per sample in
# every router (adapters and SERA-Fusion levels); the two kept
# probabilities are renormalised to sum to 1 (a softmax over the two kept
# logits). Only the two chosen experts run for each sample.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    backbone=dict(adapter=dict(router=dict(top_k=2))),
    neck=dict(router=dict(top_k=2)))
