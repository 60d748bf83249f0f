# The SERA paper's model on RefCOCO+ (unc).
_base_ = ['./sera-paper_dinov2-b_refcoco.py']
data_root = 'data/refcoco+'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
