# RefCOCOg, UMD partition (train / val / test): data/refcocog/refs(umd).p,
# data/refcocog/instances.json, COCO train2014 images.
_base_ = ['./refcoco_unc.py']
data_root = 'data/refcocog'
train_dataloader = dict(dataset=dict(data_root=data_root, split_by='umd'))
val_dataloader = dict(dataset=dict(data_root=data_root, split_by='umd'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, split_by='umd', split='test'))
