# Tiny DETRIS on the tiny synthetic set (random weights, CPU, seconds): a
# 4-block DINOv2 with 4 registers (patch 8 at 64 px), a 2-layer CLIP text
# model, adapters in text layer 1 and DINOv2 blocks 1 and 3, the neck over
# blocks 1, 2 and 3.
_base_ = ['../../../configs/sera/sera_tiny_synthetic.py']
custom_imports = dict(
    imports=['sera_mm.plugin', 'projects.detris_sera.detris_sera'],
    allow_failed_imports=False)
img_size = 64
model = dict(
    text_encoder=dict(
        _delete_=True,
        type='DETRISTextEncoder',
        encoder=dict(
            type='CLIPTextEncoder',
            pretrained=None,
            config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=2,
                projection_dim=32,
                num_hidden_layers=2),
            max_length=17,
            project_words=False,
            trainable='none'),
        adapter=dict(type='DETRISTextAdapter', hidden_channels=16),
        adapter_indices=(1, ),
        scale=0.2),
    backbone=dict(
        _delete_=True,
        type='DETRISDINOv2Backbone',
        pretrained=None,
        config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=2,
            patch_size=8,
            image_size=img_size,
            num_register_tokens=4),
        out_indices=(1, 2, 3),
        adapter=dict(
            type='DETRISVisualAdapter', hidden_channels=16, num_heads=2),
        adapter_indices=(1, 3),
        trainable='none'),
    neck=dict(
        _delete_=True,
        type='DETRISNeck',
        channels=32,
        strides=(1, 1, 1),
        num_heads=2,
        norm_cfg=dict(type='BN')),
    decode_head=dict(
        proj_channels=16,
        norm_cfg=dict(type='BN'),
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
        ]),
    balance_loss_weight=0.0)
