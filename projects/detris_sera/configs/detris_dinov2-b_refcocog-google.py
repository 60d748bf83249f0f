# DETRIS-B on RefCOCOg (google: train / val), as DETRIS's
# config/refcocog_g/DETRIS_base.yaml: the RefCOCO recipe with 50 epochs and
# x0.1 at epoch 35; the google split has no test set, so testing uses val.
_base_ = ['./detris_dinov2-b_refcoco.py']
data_root = 'data/refcocog'
train_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
val_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, split_by='google', split='val'))
# DETRIS's G-Ref (google) schedule: 50 epochs, x0.1 at epoch 35
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=50,
         milestones=[35], gamma=0.1)
]
train_cfg = dict(max_epochs=50)
