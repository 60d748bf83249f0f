# ETRIS's RefCOCO recipe (kkakkkka/ETRIS, config/refcoco/bridge_v16.yaml):
# CRIS's (schedule_cris_50e_refcoco.py: Adam, lr 1e-4, no weight decay,
# no gradient clipping, 50 epochs with x0.1 at epoch 35, SyncBN, seed 0,
# validation every epoch) with a total batch of 32 (batch_size: 32) and
# the encoders at the base learning rate (lr_multi: 1).
_base_ = ['./schedule_cris_50e_refcoco.py']
auto_scale_lr = dict(base_batch_size=32)
