# DETRIS-L on RefCOCO (unc), as its config/refcoco/DETRIS_large.yaml:
# DINOv2-L/14 with 4 registers (24 blocks, width 1024), dense aligners
# (width 128) beside the MLP of blocks 2, 6, 10, 14, 18, 22, outputs of
# blocks 8, 16 and the last; the same CLIP ViT-B/16 text with adapters;
# 50 epochs with x0.1 at epoch 35; everything else as DETRIS-B.
# Weights: 'facebook/dinov2-with-registers-large', or Meta's
# dinov2_vitl14_reg4_pretrain.pth through --cfg-options
# model.backbone.pretrained=/path/to/dinov2_vitl14_reg4_pretrain.pth
_base_ = ['./detris_dinov2-b_refcoco.py']
model = dict(
    backbone=dict(
        pretrained='facebook/dinov2-with-registers-large',
        config=dict(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
        out_indices=(8, 16, 23),
        adapter_indices=(2, 6, 10, 14, 18, 22)))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=50,
         milestones=[35], gamma=0.1)
]
train_cfg = dict(max_epochs=50)
