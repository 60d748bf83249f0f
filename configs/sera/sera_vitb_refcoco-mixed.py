# SERA, CLIP ViT-B/16 + CLIP text, trained on RefCOCO (unc) + RefCOCO+ (unc)
# + RefCOCOg (umd) at once without any image of their val/test splits
# (see configs/_base_/datasets/refcoco_mixed.py), 50 epochs, 8 images/GPU;
# the test run evaluates all eight splits, one table per dataset.
# Offline weights: see sera_vitb_refcoco.py.
_base_ = [
    '../_base_/models/sera_vitb16_clip.py',
    '../_base_/datasets/refcoco_mixed.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_sera_50e_refcoco.py'
]
# RefCOCOg's longer expressions: 22 CLIP tokens, as its own config
model = dict(text_encoder=dict(max_length=22))
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='mean/mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
