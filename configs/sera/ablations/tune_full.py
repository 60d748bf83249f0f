# Ablation row "tune_full": the whole MobileNetV2 fine-tunes (trainable='all'
# and frozen_stages=-1: every block's weights train; BatchNorm statistics
# stay frozen as in every row). The text encoder stays frozen, as in the
# main config, to keep the feature cache and the CPU cost of the run; the
# row therefore measures full tuning of the vision side only. A trained
# prefix cannot be cached: the main config's frozen-prefix cache is off.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    text_encoder=dict(trainable='none'),
    backbone=dict(trainable='all', frozen_stages=-1, prefix_cache=0))
