# Ablation row "routing_noisy_top2": noisy top-2 gating (Shazeer et al.,
# 2017) in every router: during training, Gaussian noise with a learned
# per-expert scale (softplus of a linear map of the router's hidden
# features, starting at 0.69) is added to the logits before the top-2
# choice; evaluation uses the clean logits. The SERA paper uses noisy top-K
# at the fusion stage.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    backbone=dict(adapter=dict(router=dict(top_k=2, noise='learned'))),
    neck=dict(router=dict(top_k=2, noise='learned')))
