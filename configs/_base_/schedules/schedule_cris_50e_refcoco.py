# CRIS's RefCOCO recipe (DerrickWang005/CRIS.pytorch,
# config/refcoco/cris_r50.yaml): Adam, lr 1e-4, no weight decay
# (weight_decay: 0.), no gradient clipping (max_norm: 0.), 50 epochs with
# x0.1 at epoch 35 (milestones: [35], lr_decay: 0.1), total batch 64
# (batch_size: 64), SyncBN (sync_bn: True), seed 0 (manual_seed: 0). CRIS
# trains the CLIP encoders at 0.1x the learning rate (lr_multi: 0.1): the
# model config sets that through paramwise_cfg. Validation every epoch
# (evaluate: True) is costly; it is kept at every epoch as CRIS does.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=50,
         milestones=[35], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# the batch the learning rate was set for (tools/train.py --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=64)
sync_bn = 'torch'
randomness = dict(seed=0)
