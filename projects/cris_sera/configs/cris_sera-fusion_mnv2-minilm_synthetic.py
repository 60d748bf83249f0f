# CRIS-style model with its FPN neck replaced by SERA-Fusion (routed
# geometry-preserving experts, sentence FiLM and word cross-attention per
# level, fused at stride 8, so the head upsamples once as in the main job).
_base_ = './cris_mnv2-minilm_synthetic.py'
model = dict(
    neck=dict(_delete_=True, type='SERAFusion', channels=96,
              router=dict(type='ExpertRouter', hidden_channels=32),
              fuse_level=0, num_heads=4),
    decode_head=dict(num_upsample=1))
