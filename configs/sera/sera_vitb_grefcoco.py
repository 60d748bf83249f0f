# SERA, CLIP ViT-B/16 + CLIP text, gRefCOCO (unc; multi-target and no-target
# expressions), 50 epochs, 8 images/GPU, with a no-target head (an empty mask
# when sigmoid(logit) > 0.5) and a Dice loss that is defined on empty masks.
# Offline weights: see sera_vitb_refcoco.py.
_base_ = [
    '../_base_/models/sera_vitb16_clip.py',
    '../_base_/datasets/grefcoco_unc.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_sera_50e_refcoco.py'
]
model = dict(
    decode_head=dict(
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            dict(type='SmoothDiceLoss', smooth=1.0, loss_weight=1.0)
        ],
        no_target_head=dict(
            type='NoTargetHead', hidden_channels=256, dropout=0.1,
            threshold=0.5, loss_weight=1.0)))
train_dataloader = dict(batch_size=8)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='gIoU', rule='greater'))
log_processor = dict(by_epoch=True)
