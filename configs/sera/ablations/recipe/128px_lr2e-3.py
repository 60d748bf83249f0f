# Recipe search for the 15-minute main job: input 128 px instead of 160
# (0.64x the pixels), 850 iterations instead of 600 in about the same time,
# twice the learning rate.
_base_ = './lr2e-3.py'
# the one input size: both pipelines' Letterbox and the data preprocessor
input_size = 128
max_iters = 850
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters,
         T_max=max_iters - 50, eta_min=1e-5)
]
train_cfg = dict(max_iters=max_iters)
