# The SERA paper's changes on DETRIS-L (detris_dinov2-l_refcoco.py): the
# paper reports DINOv2-B only; this is the same construction at L size.
_base_ = ['./detris_dinov2-l_refcoco.py']
model = dict(
    text_encoder=dict(encoder=dict(trainable='norm_bias')),
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAPaperDenseAdapter',
            hidden_channels=128,
            num_heads=8,
            attn_dropout=0.1,
            router=dict(type='ExpertRouter', condition='visual')),
        trainable='norm_bias'),
    neck=dict(level_block=dict(type='RoutedExpertBlock')),
    balance_loss_weight=1e-2,
    z_loss_weight=1e-3,
    assign_loss_weight=1e-3)
auto_scale_lr = dict(base_batch_size=16)
