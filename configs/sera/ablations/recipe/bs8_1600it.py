# Recipe search for the 15-minute main job: half the batch (8 images) for
# twice the iterations (1,600), so the same number of samples is seen with
# twice the optimizer updates; warm-up over the same number of samples
# (100 iterations), cosine decay to the new end; learning rate unchanged.
_base_ = '../../sera_mnv2-minilm_synthetic_800it.py'
max_iters = 1600
train_dataloader = dict(batch_size=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100,
         end=max_iters, T_max=max_iters - 100, eta_min=1e-5)
]
train_cfg = dict(max_iters=max_iters)
