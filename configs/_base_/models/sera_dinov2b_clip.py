# SERA with DINOv2-B/14 with registers (vision) and CLIP's text transformer,
# input 448 (a 32x32 grid). ``config`` is used only when pretrained=None.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # ImageNet mean/std on 0-255 RGB (DINOv2's normalisation)
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=0,
    # Letterbox already pads every image to this size; mmseg's batching
    # in training needs a size (or size_divisor) and adds nothing here.
    size=(448, 448))
experts = ('spatial', 'context', 'boundary', 'semantic')
model = dict(
    type='SERASegmentor',
    data_preprocessor=data_preprocessor,
    text_encoder=dict(
        type='CLIPTextEncoder',
        pretrained='openai/clip-vit-base-patch16',
        config=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            projection_dim=512),
        max_length=17,
        trainable='norm_bias'),
    backbone=dict(
        type='DINOv2Backbone',
        pretrained='facebook/dinov2-with-registers-base',
        config=dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            patch_size=14,
            image_size=518,
            num_register_tokens=4),
        out_indices=(3, 7, 11),
        adapter=dict(
            type='SERAAdapter',
            hidden_channels=64,
            experts=experts,
            router=dict(type='ExpertRouter', hidden_channels=64),
            num_heads=4),
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
