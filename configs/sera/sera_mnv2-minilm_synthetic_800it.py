# The 600-iteration job's model (neck and head 96 wide), data and runtime
# trained for 800 iterations at batch 16 (about 9 minutes on a 2-core CPU):
# the main job of an earlier release (val mIoU 49.11 +- 0.80 over 3 seeds)
# and the base of the recipe trials in configs/sera/ablations/recipe/, whose
# committed runs were measured with it.
_base_ = './sera_mnv2-minilm_synthetic_600it.py'
max_iters = 800
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50,
         end=max_iters, T_max=max_iters - 50, eta_min=1e-5)
]
train_cfg = dict(max_iters=max_iters)
