# CRIS + SERA-Fusion + SERA-Adapters after every other ViT block. The
# adapters train at the full learning rate (the encoders keep CRIS's 0.1x).
_base_ = './cris_sera-fusion_vitb_refcoco.py'
model = dict(
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAAdapter',
            hidden_channels=64,
            experts=('spatial', 'context', 'boundary', 'semantic'),
            router=dict(type='ExpertRouter', hidden_channels=64),
            num_heads=4),
        adapter_indices=(1, 3, 5, 7, 9, 11)))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone.adapters': dict(lr_mult=1.0)}))
