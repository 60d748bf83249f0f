# CRIS-style model with SERA-Fusion and SERA-Adapters after MobileNetV2
# blocks 10, 13 and 16 (the main job's positions): SERA's two parts swapped
# into CRIS.
_base_ = './cris_sera-fusion_mnv2-minilm_synthetic.py'
model = dict(
    backbone=dict(
        adapter=dict(
            _delete_=True, type='SERAAdapter', hidden_channels=32,
            experts=('spatial', 'context', 'boundary', 'semantic'),
            router=dict(type='ExpertRouter', hidden_channels=32),
            num_heads=4),
        adapter_indices=(10, 13, 16)))
