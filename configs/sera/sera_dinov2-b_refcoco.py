# SERA, DINOv2-B/14 with registers + CLIP text, RefCOCO (unc), input 448
# (32x32 grid), 50 epochs, 8 images/GPU. Weights: HF hub ids
# 'facebook/dinov2-with-registers-base' and 'openai/clip-vit-base-patch16';
# offline, pass local folders through --cfg-options
# model.backbone.pretrained=... model.text_encoder.pretrained=...
_base_ = [
    '../_base_/models/sera_dinov2b_clip.py',
    '../_base_/datasets/refcoco_unc.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_sera_50e_refcoco.py'
]
# the one input size: both pipelines' Letterbox and the data preprocessor
# (sera_mm.utils.config_utils.apply_input_size)
input_size = 448
train_dataloader = dict(batch_size=8)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
