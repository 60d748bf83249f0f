# The 600-iteration job's model (neck and head 96 wide) with a longer
# schedule: 12x the iterations of
# sera_mnv2-minilm_synthetic_600it.py (about
# 2 hours on a 2-core CPU at ~1 s per iteration of 16 images), validation
# every 1,200 iterations.
_base_ = ['./sera_mnv2-minilm_synthetic_600it.py']
max_iters = 7200
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100,
         end=max_iters, T_max=max_iters - 100, eta_min=1e-5)
]
train_cfg = dict(max_iters=max_iters, val_interval=1200, val_begin=1)
default_hooks = dict(checkpoint=dict(interval=1200))
