# The SERA paper's model on RefCOCOg (google: train / val; testing uses val),
# the G-Ref split its table reports, on DETRIS's G-Ref (google) schedule.
_base_ = ['./sera-paper_dinov2-b_refcoco.py']
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
