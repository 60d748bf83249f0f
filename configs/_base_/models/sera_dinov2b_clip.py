# SERA with DINOv2-B/14 with registers (vision) and CLIP's text transformer,
# input 448 (a 32x32 grid): the CLIP ViT-B/16 model with another backbone
# and normalisation. ``config`` is used only when pretrained=None.
_base_ = ['./sera_vitb16_clip.py']
data_preprocessor = dict(
    # ImageNet mean/std on 0-255 RGB (DINOv2's normalisation)
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    size=(448, 448))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
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
        adapter={{_base_.model.backbone.adapter}},
        adapter_indices=(1, 3, 5, 7, 9, 11),
        trainable='norm_bias'))
