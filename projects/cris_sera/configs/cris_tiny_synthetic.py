# Tiny CRIS on the tiny synthetic set (random weights, CPU, seconds): the
# geometry of configs/sera/sera_tiny_synthetic.py with three taps, no
# adapters, fully fine-tuned encoders and the CRIS neck.
_base_ = ['../../../configs/sera/sera_tiny_synthetic.py']
custom_imports = dict(
    imports=['sera_mm.plugin', 'projects.cris_sera.cris_sera'],
    allow_failed_imports=False)
model = dict(
    text_encoder=dict(trainable='all'),
    backbone=dict(
        out_indices=(1, 2, 3), adapter=None, adapter_indices=(),
        trainable='all'),
    neck=dict(
        _delete_=True,
        type='CRISNeck',
        channels=32,
        top_channels=64,
        low_channels=16))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'text_encoder': dict(lr_mult=0.1)
        }))
