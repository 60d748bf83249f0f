# DETRIS-B on RefCOCO+ (unc): DETRIS's RefCOCO recipe on RefCOCO+'s data.
# DETRIS's config/refcoco+/DETRIS_base.yaml validates (and keeps its best
# checkpoint) on testB; here validation uses val, so that no test split
# chooses the checkpoint (projects/detris_sera/README.md).
_base_ = ['./detris_dinov2-b_refcoco.py']
data_root = 'data/refcoco+'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
