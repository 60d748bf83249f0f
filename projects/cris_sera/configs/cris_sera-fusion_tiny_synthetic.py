# Tiny CRIS with SERA-Fusion in place of the CRIS neck.
_base_ = './cris_tiny_synthetic.py'
model = dict(
    neck=dict(
        _delete_=True,
        type='SERAFusion',
        channels=32,
        router=dict(type='ExpertRouter', hidden_channels=16),
        fuse_level=0,
        num_heads=2))
