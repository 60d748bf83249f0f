# The SERA paper's model (arXiv 2603.12538) as the paper builds it: DETRIS-B
# (detris_dinov2-b_refcoco.py) with
# - SERA-Adapter in place of DETRIS's dense aligners (same blocks, width,
#   heads, factor): G_corr = G_rich + 0.25 w_s S(G) + 0.15 w_b B(G), soft
#   routing from GAP(G) (SERAPaperDenseAdapter);
# - SERA-Fusion on the neck's fusion-stage maps, before DETRIS's multimodal
#   interaction: the paper's four experts (spatial, context, boundary,
#   shape) under noisy top-2 routing from GAP(X) (RoutedExpertBlock, one
#   per level);
# - the paper's PET rule: LayerNorm and bias terms of both encoders train;
# - the paper's losses: segmentation (DETRIS's BCE) + z-loss (mean squared
#   routing logit) + CV^2 of the dispatched expert usage + a
#   token-assignment term (mean normalised routing entropy: our choice);
# - the paper's recipe: Adam, lr 1e-4, batch 16, x0.1 decay; no clipping.
# Everything else (encoders, adapters' placement, neck, decoder, data,
# epochs and decay epochs) is DETRIS-B's. Every choice where the paper is
# silent is listed in projects/detris_sera/README.md.
# Batch: 8 images per GPU, so 2 GPUs give the paper's 16
#   (bash tools/dist_train.sh CONFIG 2); otherwise add --auto-scale-lr.
_base_ = ['./detris_dinov2-b_refcoco.py']
model = dict(
    text_encoder=dict(encoder=dict(trainable='norm_bias')),
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAPaperDenseAdapter',
            hidden_channels=128,
            num_heads=8,
            attn_dropout=0.1,
            router=dict(type='ExpertRouter', condition='visual')),
        trainable='norm_bias'),
    neck=dict(level_block=dict(type='RoutedExpertBlock')),
    balance_loss_weight=1e-2,
    z_loss_weight=1e-3,
    assign_loss_weight=1e-3)
auto_scale_lr = dict(base_batch_size=16)
