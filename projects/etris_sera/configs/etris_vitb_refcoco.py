# ETRIS (Xu et al., ICCV 2023) with CLIP ViT-B/16 + CLIP text on RefCOCO
# (unc), 50 epochs, input 416.
# - both encoders fully frozen (trainable='none');
# - an ETRISBridge (width 64, visual queries over the words) after every
#   fourth block: blocks 3, 7, 11;
# - CRIS's neck (CRISNeck) and decoder/projector (SERAHead), which ETRIS
#   builds on, with BatchNorm (SyncBN under distributed training);
# - ETRIS's recipe (schedule_etris_50e_refcoco.py: Adam 1e-4, no weight
#   decay, no clipping); total batch 32 = 8 images/GPU x 4 GPUs
#   (--auto-scale-lr on another GPU count).
_base_ = [
    '../../../configs/_base_/models/sera_vitb16_clip.py',
    '../../../configs/_base_/datasets/refcoco_unc.py',
    '../../../configs/_base_/default_runtime.py',
    '../../../configs/_base_/schedules/schedule_etris_50e_refcoco.py'
]
custom_imports = dict(
    imports=[
        'sera_mm.plugin', 'projects.cris_sera.cris_sera',
        'projects.etris_sera.etris_sera'
    ],
    allow_failed_imports=False)
model = dict(
    text_encoder=dict(trainable='none'),
    backbone=dict(
        adapter=dict(
            _delete_=True, type='ETRISBridge', hidden_channels=64,
            num_heads=4),
        adapter_indices=(3, 7, 11),
        trainable='none'),
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
        ffn_channels=512, dropout=0.1, norm_cfg=dict(type='BN')))
train_dataloader = dict(batch_size=8)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=5, max_keep_ckpts=2,
                    save_best='mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
