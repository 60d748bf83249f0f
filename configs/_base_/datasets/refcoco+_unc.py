# RefCOCO+, UNC partition (train / val / testA / testB): data/refcoco+/
# refs(unc).p, data/refcoco+/instances.json, COCO train2014 images.
_base_ = ['./refcoco_unc.py']
data_root = 'data/refcoco+'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
