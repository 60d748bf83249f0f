# RefCOCOg, Google partition (train / val; it has no public test split):
# data/refcocog/refs(google).p, data/refcocog/instances.json.
_base_ = ['./refcoco_unc.py']
data_root = 'data/refcocog'
train_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
val_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, split_by='google', split='val'))
