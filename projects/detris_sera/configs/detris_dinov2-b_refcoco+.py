# DETRIS-B on RefCOCO+ (unc): DETRIS's RefCOCO recipe on RefCOCO+'s data
# (config/refcoco+/DETRIS_base.yaml differs only in the dataset).
_base_ = ['./detris_dinov2-b_refcoco.py']
data_root = 'data/refcoco+'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
