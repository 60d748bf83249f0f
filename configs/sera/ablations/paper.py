# Ablation row "paper": NOT the paper's model (that is DETRIS-based, see
# projects/detris_sera), but the paper's experts inside SERA-MM's model.
# The SERA paper's own expert design (arXiv
# 2603.12538) in place of SERA-MM's, on the 600-iteration synthetic job
# (sera_mnv2-minilm_synthetic_600it.py: same MobileNetV2 + MiniLM encoders,
# schedule, seed and data). The backbone
# adapters are SERAPaperAdapter (G_rich + routed spatial/boundary experts
# with a visual-only router); the SERA-Fusion neck runs the paper's four
# residual experts, mixed without an extra residual, under a visual-only
# top-2 router with fixed logit noise in training. Router losses: the main
# config's balance weight (1e-2) plus the paper's z-loss (1e-3).
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAPaperAdapter',
            hidden_channels=32,
            num_heads=4,
            router=dict(
                type='ExpertRouter', condition='visual', hidden_channels=32))),
    neck=dict(
        experts=('paper_spatial', 'paper_context', 'paper_boundary',
                 'paper_shape'),
        residual=False,
        router=dict(condition='visual', top_k=2, noise='fixed',
                    noise_std=1.0)),
    balance_loss_weight=1e-2,
    z_loss_weight=1e-3)
