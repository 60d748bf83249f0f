# Tiny ETRIS on the tiny synthetic set (random weights, CPU, seconds): the
# geometry of configs/sera/sera_tiny_synthetic.py with three taps, frozen
# encoders, ETRIS bridges and the CRIS neck.
_base_ = ['../../../configs/sera/sera_tiny_synthetic.py']
custom_imports = dict(
    imports=[
        'sera_mm.plugin', 'projects.cris_sera.cris_sera',
        'projects.etris_sera.etris_sera'
    ],
    allow_failed_imports=False)
model = dict(
    text_encoder=dict(trainable='none'),
    backbone=dict(
        out_indices=(1, 2, 3),
        adapter=dict(
            _delete_=True, type='ETRISBridge', hidden_channels=16,
            num_heads=2),
        adapter_indices=(1, 3),
        trainable='none'),
    neck=dict(
        _delete_=True,
        type='CRISNeck',
        channels=32,
        top_channels=64,
        low_channels=16))
