# SERA, CLIP ViT-B/16 + CLIP text, RefCOCO+ (unc), 50 epochs, 8 images/GPU.
# Offline weights: see sera_vitb_refcoco.py.
_base_ = [
    '../_base_/models/sera_vitb16_clip.py',
    '../_base_/datasets/refcoco+_unc.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_sera_50e_refcoco.py'
]
train_dataloader = dict(batch_size=8)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
