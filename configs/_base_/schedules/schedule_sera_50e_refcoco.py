# SERA-MM's own RefCOCO recipe (not a published one): AdamW, lr 1e-4,
# weight decay 1e-2 (not on norm/bias terms), gradient clipping at norm 0.1,
# 50 epochs with x0.1 at epoch 35, validation every 5 epochs. The learning
# rate is set for a total batch of 16 (8 images/GPU x 2 GPUs); on another
# batch, tools/train.py --auto-scale-lr scales it linearly.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=1e-2),
    # Norm and bias parameters of the frozen encoders are the only ones
    # they train: keep weight decay off them.
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=50,
         milestones=[35], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)
randomness = dict(seed=0)
# Checkpoint/logger intervals are set in the leaf configs (a key may not
# be defined by two _base_ files).
