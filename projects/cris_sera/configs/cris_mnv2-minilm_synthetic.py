# CRIS-style baseline on the main synthetic job (MobileNetV2 + MiniLM, 160
# px, the 15-minute schedule, the same data, seed and PET recipe):
# CRIS's text-modulated FPN neck (CRISNeck) and its decoder + sentence-kernel
# projector (SERAHead); no adapters and no routers. CRISNeck returns the
# stride-16 level, so the head upsamples once more (the logits keep the
# main model's resolution). The encoders keep the main job's tuning
# (norm/bias terms, text frozen) instead of CRIS's full fine-tuning, so
# that the rows differ only in the parts swapped. The same model as the
# ablation row `no_fusion` without adapters.
_base_ = '../../../configs/sera/sera_mnv2-minilm_synthetic_600it.py'
custom_imports = dict(
    imports=['sera_mm.plugin', 'projects.cris_sera.cris_sera'],
    allow_failed_imports=False)
model = dict(
    backbone=dict(adapter=None, adapter_indices=()),
    neck=dict(_delete_=True, type='CRISNeck', channels=96, top_channels=192,
              low_channels=48),
    decode_head=dict(num_upsample=2))
