# Ablation row "no_fusion": the SERA-Fusion neck is replaced by the CRIS
# text-modulated FPN neck (projects/cris_sera), which has the same
# interface (feats, text) -> (B, C, h, w) but no experts, routers or word
# attention. CRISNeck returns its map at the size of the middle level
# (stride 16, where SERA-Fusion fuses at stride 8), so the head gets one
# more x2 upsampling block: the logits keep the main model's resolution.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
custom_imports = dict(
    imports=['sera_mm.plugin', 'projects.cris_sera.cris_sera'],
    allow_failed_imports=False)
model = dict(
    neck=dict(
        _delete_=True,
        type='CRISNeck',
        channels=96,
        top_channels=192,
        low_channels=48),
    decode_head=dict(num_upsample=2))
