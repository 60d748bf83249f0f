# SERA with CLIP ViT-B/16 (vision) and CLIP's text transformer, input 416.
# ``pretrained`` takes an HF hub id, a local folder or OpenAI's ViT-B-16.pt;
# ``config`` describes the same architecture and is used only when
# ``pretrained=None`` (random init, e.g. tools/analysis/param_report.py
# --random-init).
data_preprocessor = dict(
    type='ReferDataPreProcessor',
    # CLIP's mean/std on 0-255 RGB
    mean=[122.7709383, 116.7460125, 104.09373615],
    std=[68.5005327, 66.6321579, 70.32316305],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=0,
    # Letterbox already pads every image to this size; mmseg's batching
    # in training needs a size (or size_divisor) and adds nothing here.
    size=(416, 416))
clip_pretrained = 'openai/clip-vit-base-patch16'
experts = ('spatial', 'context', 'boundary', 'semantic')
model = dict(
    type='SERASegmentor',
    data_preprocessor=data_preprocessor,
    text_encoder=dict(
        type='CLIPTextEncoder',
        pretrained=clip_pretrained,
        config=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            projection_dim=512),
        max_length=17,
        trainable='norm_bias'),
    backbone=dict(
        type='CLIPVisionBackbone',
        pretrained=clip_pretrained,
        config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            patch_size=16,
            image_size=224,
            projection_dim=512),
        out_indices=(3, 7, 11),
        adapter=dict(
            type='SERAAdapter',
            hidden_channels=64,
            experts=experts,
            router=dict(type='ExpertRouter', hidden_channels=64),
            num_heads=4,
            # recompute the adapters in the backward pass instead of
            # storing their activations: about 16 MiB less per adapter and
            # image pair at 416 px for about 3% more time per step
            with_cp=True),
        adapter_indices=(1, 3, 5, 7, 9, 11),
        trainable='norm_bias'),
    neck=dict(
        type='SERAFusion',
        channels=256,
        router=dict(type='ExpertRouter', hidden_channels=64),
        fuse_level=0,
        num_heads=8),
    decode_head=dict(
        type='SERAHead',
        channels=256,
        num_layers=3,
        num_heads=8,
        ffn_channels=1024,
        dropout=0.1,
        threshold=0.35,
        align_corners=False,
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            dict(type='DiceLoss', use_sigmoid=True, loss_weight=1.0)
        ]),
    balance_loss_weight=0.01,
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
