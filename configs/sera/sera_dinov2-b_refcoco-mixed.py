# SERA, DINOv2-B/14 with registers + CLIP text, input 448 (32x32 grid),
# trained on RefCOCO (unc) + RefCOCO+ (unc) + RefCOCOg (umd) at once without
# any image of their val/test splits (configs/_base_/datasets/
# refcoco_mixed.py), 50 epochs, 8 images/GPU; the test run evaluates all
# eight splits, one table per dataset. Offline weights: see
# sera_dinov2-b_refcoco.py.
_base_ = [
    '../_base_/models/sera_dinov2b_clip.py',
    '../_base_/datasets/refcoco_mixed.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_sera_50e_refcoco.py'
]
# the one input size: every pipeline's Letterbox and the data preprocessor
input_size = 448
# RefCOCOg's longer expressions: 22 CLIP tokens, as its own config
model = dict(text_encoder=dict(max_length=22))
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='mean/mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
