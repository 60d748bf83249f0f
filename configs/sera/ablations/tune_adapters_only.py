# Ablation row "tune_adapters_only": both pretrained encoders fully frozen
# (backbone trainable='none': not even its norm/bias terms train; the text
# encoder is frozen in the main config already). What trains: the
# SERA-Adapters, the SERA-Fusion neck and the head.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    text_encoder=dict(trainable='none'),
    backbone=dict(trainable='none'))
