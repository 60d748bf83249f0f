# Tiny SERA-paper model: tiny DETRIS with the paper's SERA-Adapter and
# SERA-Fusion, its PET rule and its router losses.
_base_ = ['./detris_tiny_synthetic.py']
model = dict(
    text_encoder=dict(encoder=dict(trainable='norm_bias')),
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAPaperDenseAdapter',
            hidden_channels=16,
            num_heads=2,
            router=dict(type='ExpertRouter', condition='visual')),
        trainable='norm_bias'),
    neck=dict(
        level_block=dict(
            type='RoutedExpertBlock',
            experts=[
                'paper_spatial',
                dict(type='paper_context', num_heads=2), 'paper_boundary',
                'paper_shape'
            ])),
    balance_loss_weight=1e-2,
    z_loss_weight=1e-3,
    assign_loss_weight=1e-3)
