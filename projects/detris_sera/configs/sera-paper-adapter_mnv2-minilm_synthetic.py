# Ablation "+ SERA-Adapter" on the main synthetic job: the DETRIS-style
# baseline with the SERA paper's adapter in place of DETRIS's dense aligners
# (same blocks, width, heads, factor) and the paper's router losses.
_base_ = './detris_mnv2-minilm_synthetic.py'
model = dict(
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAPaperDenseAdapter',
            hidden_channels=32,
            num_heads=4,
            attn_dropout=0.1,
            router=dict(type='ExpertRouter', condition='visual'))),
    balance_loss_weight=1e-2,
    z_loss_weight=1e-3,
    assign_loss_weight=1e-3)
