# DETRIS-B (Huang et al., AAAI 2025) on RefCOCO (unc), DETRIS's recipe as in
# its public config/refcoco/DETRIS_base.yaml:
# - frozen DINOv2-B/14 with 4 registers (input 448, a 32x32 grid) and frozen
#   CLIP ViT-B/16 text (word length 17); only the adapters train;
# - dense-aligner adapters (width 128, 8 heads) beside the MLP of DINOv2
#   blocks 1, 3, 5, 7, 9, 11, factor 0.2; text adapters (width 64) beside the
#   MLP of CLIP text layers 1, 3, 5, 7, 9, 11, factor 0.2;
# - neck over DINOv2 outputs 4, 8 and the last block (768 x 3 -> 512), its
#   sentence gates, aggregation and CoordConv; decoder 3 layers, 8 heads,
#   FFN 512, dropout 0.1; projector 256 with a sentence-generated 3x3
#   kernel; loss: BCE; SyncBN;
# - Adam, lr 1e-4, no weight decay, no gradient clipping, batch 32 in total,
#   65 epochs, x0.1 at epochs 35 and 55; CLIP mean/std; no augmentation
#   (letterbox only); one random expression per object per epoch.
# Batch: 8 images per GPU, so 4 GPUs give DETRIS's 32
#   (bash tools/dist_train.sh CONFIG 4); on another number of GPUs add
#   --auto-scale-lr to scale the learning rate linearly from batch 32.
# Weights: HF ids below (DETRIS used the same DINOv2 weights as Meta's
# dinov2_vitb14_reg4_pretrain.pth and OpenAI's ViT-B-16.pt); offline, pass
# local folders or OpenAI's ViT-B-16.pt through --cfg-options
# model.backbone.pretrained=... model.text_encoder.encoder.pretrained=...
# Differences from DETRIS's code are listed in projects/detris_sera/README.md.
_base_ = [
    '../../../configs/_base_/datasets/refcoco_unc.py',
    '../../../configs/_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['sera_mm.plugin', 'projects.detris_sera.detris_sera'],
    allow_failed_imports=False)
img_size = 448
input_size = img_size  # read by apply_input_size
word_length = 17
clip_mean = [122.7709383, 116.7460125, 104.09373615]
data_preprocessor = dict(
    type='ReferDataPreProcessor',
    mean=clip_mean,  # CLIP's mean/std on 0-255 RGB (DETRIS's dataset)
    std=[68.5005327, 66.6321579, 70.32316305],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=0,
    size=(img_size, img_size))
model = dict(
    type='SERASegmentor',
    data_preprocessor=data_preprocessor,
    text_encoder=dict(
        type='DETRISTextEncoder',
        encoder=dict(
            type='CLIPTextEncoder',
            pretrained='openai/clip-vit-base-patch16',
            config=dict(
                hidden_size=512,
                intermediate_size=2048,
                num_hidden_layers=12,
                num_attention_heads=8,
                projection_dim=512),
            max_length=word_length,
            # DETRIS's words: the final-LayerNorm features (512), not
            # projected; its sentence: the projected end token
            project_words=False,
            trainable='none'),
        adapter=dict(type='DETRISTextAdapter', hidden_channels=64),
        adapter_indices=(1, 3, 5, 7, 9, 11),
        scale=0.2),
    backbone=dict(
        type='DETRISDINOv2Backbone',
        pretrained='facebook/dinov2-with-registers-base',
        config=dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            patch_size=14,
            image_size=518,
            num_register_tokens=4),
        out_indices=(4, 8, 11),
        final_norm=True,
        adapter=dict(
            type='DETRISVisualAdapter',
            hidden_channels=128,
            num_heads=8,
            attn_dropout=0.1),
        adapter_indices=(1, 3, 5, 7, 9, 11),
        adapter_scale=0.2,
        trainable='none'),
    neck=dict(
        type='DETRISNeck',
        channels=512,
        strides=(1, 1, 1),
        num_heads=8,
        norm_cfg=dict(type='BN')),
    decode_head=dict(
        type='SERAHead',
        channels=512,
        num_layers=3,
        num_heads=8,
        ffn_channels=512,
        dropout=0.1,
        proj_channels=256,
        num_upsample=2,
        kernel_size=3,
        threshold=0.35,
        norm_cfg=dict(type='BN'),
        align_corners=False,
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
        ]),
    balance_loss_weight=0.0,
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
# every BatchNorm becomes SyncBatchNorm under distributed training
sync_bn = 'torch'
# letterbox padding with CLIP's mean colour (BGR, as loaded): 0 after
# normalisation, as DETRIS pads
pad_bgr = clip_mean[::-1]
train_pipeline = [
    dict(type='LoadReferImage'),
    dict(type='LoadReferMask'),
    dict(type='Letterbox', size=img_size, pad_val=pad_bgr),
    dict(type='PackReferInputs')
]
test_pipeline = [
    dict(type='LoadReferImage'),
    dict(type='Letterbox', size=img_size, pad_val=pad_bgr),
    dict(type='LoadReferMask'),
    dict(type='PackReferInputs')
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=65,
         milestones=[35, 55], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=65, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# the batch the learning rate was set for (tools/train.py --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=32)
randomness = dict(seed=0)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=2,
                    save_best='mIoU', rule='greater'))
log_processor = dict(by_epoch=True)
