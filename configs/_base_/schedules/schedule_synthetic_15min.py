# Short iteration-based schedule for the synthetic benchmark on CPU: 600
# iterations (about 10 minutes of training for the MobileNetV2 + MiniLM
# model at 16 images per iteration), linear warm-up then cosine decay.
# AdamW updates its hundreds of small tensors (norms, biases, adapters)
# with the multi-tensor kernels (foreach=True): PyTorch picks them by
# default on GPUs only, and on CPUs they give the same values bit for bit
# as the per-tensor loop, in less time.
max_iters = 600
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=1e-2, foreach=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters,
         T_max=max_iters - 50, eta_min=1e-5)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=250)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# Checkpoint/logger intervals are set in the leaf configs (a key may not
# be defined by two _base_ files).
