# SERA, CLIP ViT-B/16 + CLIP text, RefCOCO (unc), 50 epochs, 8 images/GPU.
# Weights come from the HF hub id 'openai/clip-vit-base-patch16' (both
# encoders). Offline, point both at a local HF folder or OpenAI's ViT-B-16.pt:
#   --cfg-options model.backbone.pretrained=/path/to/ViT-B-16.pt \
#                 model.text_encoder.pretrained=/path/to/ViT-B-16.pt
_base_ = [
    '../_base_/models/sera_vitb16_clip.py',
    '../_base_/datasets/refcoco_unc.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_sera_50e_refcoco.py'
]
train_dataloader = dict(batch_size=8)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
