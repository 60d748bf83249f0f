# DETRIS-B on RefCOCOg (google: train / val): DETRIS's RefCOCO recipe
# (config/refcocog_g/DETRIS_base.yaml); the google split has no test set,
# so testing uses val.
_base_ = ['./detris_dinov2-b_refcoco.py']
data_root = 'data/refcocog'
train_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
val_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, split_by='google', split='val'))
