# CRIS with its FPN neck replaced by SERA-Fusion (routed geometry-preserving
# experts, sentence FiLM and word cross-attention per level). Everything
# else (encoders, fine-tuning recipe, decoder, data, schedule) is CRIS's.
_base_ = './cris_vitb_refcoco.py'
model = dict(
    neck=dict(
        _delete_=True,
        type='SERAFusion',
        channels=256,
        router=dict(type='ExpertRouter', hidden_channels=64),
        fuse_level=0,
        num_heads=8))
