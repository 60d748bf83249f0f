# CRIS (Wang et al., CVPR 2022) with CLIP ViT-B/16 + CLIP text on RefCOCO
# (unc), 50 epochs, input 416.
# - both encoders fully fine-tuned (trainable='all') at 0.1x the base
#   learning rate, as CRIS trains its CLIP encoders;
# - CRISNeck: CRIS's FPN with the top level multiplied by the projected
#   sentence, top-down + bottom-up aggregation and a coordinate conv. The
#   three taps of the ViT (blocks 3, 7, 11) all have stride 16 (26 x 26);
#   the neck keeps them at that size, which is CRIS's output size;
# - SERAHead: a vision-language transformer decoder (3 layers, 8 heads,
#   FFN 2048) and a projector whose 3x3 kernel is generated from the
#   sentence feature: CRIS's decoder and text-to-pixel projector design;
# - no adapters and no expert routers;
# - CRIS's recipe (schedule_cris_50e_refcoco.py: Adam 1e-4, no weight
#   decay, no clipping, SyncBN): BatchNorm in the neck and projector,
#   converted to SyncBN under distributed training; total batch 64 =
#   8 images/GPU x 8 GPUs (--auto-scale-lr on another GPU count).
_base_ = [
    '../../../configs/_base_/models/sera_vitb16_clip.py',
    '../../../configs/_base_/datasets/refcoco_unc.py',
    '../../../configs/_base_/default_runtime.py',
    '../../../configs/_base_/schedules/schedule_cris_50e_refcoco.py'
]
custom_imports = dict(
    imports=['sera_mm.plugin', 'projects.cris_sera.cris_sera'],
    allow_failed_imports=False)
model = dict(
    text_encoder=dict(trainable='all'),
    backbone=dict(adapter=None, adapter_indices=(), trainable='all'),
    neck=dict(
        _delete_=True,
        type='CRISNeck',
        channels=512,
        top_channels=1024,
        low_channels=256,
        sentence_act='relu',
        norm_cfg=dict(type='BN')),
    decode_head=dict(
        # decoder at the neck's width (vis_dim 512), projector at half
        channels=512, proj_channels=256, num_layers=3, num_heads=8,
        ffn_channels=2048, dropout=0.1, norm_cfg=dict(type='BN')))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'text_encoder': dict(lr_mult=0.1)
        }))
train_dataloader = dict(batch_size=8)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
