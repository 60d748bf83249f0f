# ETRIS-style baseline on the main synthetic job (MobileNetV2 + MiniLM, 160
# px, the 15-minute schedule, the same data and seed): both encoders fully
# frozen, ETRISBridge (width 32, visual queries over the words) after three
# backbone stages, CRIS's neck and decoder/projector, which ETRIS builds on.
# Adaptation to a CNN: ETRIS puts a bridge after every fourth of ViT-B's 12
# blocks; MobileNetV2 has no blocks of one width, so the bridges sit where
# the main job's adapters do (features 10, 13 and 16, strides 16, 16 and
# 32), on the stage's feature map flattened to tokens.
_base_ = '../../../configs/sera/sera_mnv2-minilm_synthetic_600it.py'
custom_imports = dict(
    imports=[
        'sera_mm.plugin', 'projects.cris_sera.cris_sera',
        'projects.etris_sera.etris_sera'
    ],
    allow_failed_imports=False)
model = dict(
    backbone=dict(
        adapter=dict(_delete_=True, type='ETRISBridge', hidden_channels=32,
                     num_heads=4),
        adapter_indices=(10, 13, 16),
        trainable='none'),
    neck=dict(_delete_=True, type='CRISNeck', channels=96, top_channels=192,
              low_channels=48),
    decode_head=dict(num_upsample=2))
