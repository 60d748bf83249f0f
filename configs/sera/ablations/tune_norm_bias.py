# Ablation row "tune_norm_bias": the main config's tuning, written out.
# The backbone follows the PET rule 'norm_bias' (BatchNorm affine terms and
# biases train) with blocks 0-6 frozen outright (frozen_stages=7), so the
# norm/bias terms of blocks 7-18 train; the text encoder (MiniLM) stays
# frozen (trainable='none') and its features are cached. Same model and
# numbers as the "full" row.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    text_encoder=dict(trainable='none'),
    backbone=dict(trainable='norm_bias', frozen_stages=7))
