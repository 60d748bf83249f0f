# DETRIS-B on RefCOCOg (umd: train / val / test): DETRIS's recipe with word
# length 22 (its config/refcocog_u/DETRIS_base.yaml).
_base_ = ['./detris_dinov2-b_refcoco.py']
data_root = 'data/refcocog'
model = dict(text_encoder=dict(encoder=dict(max_length=22)))
train_dataloader = dict(dataset=dict(data_root=data_root, split_by='umd'))
val_dataloader = dict(dataset=dict(data_root=data_root, split_by='umd'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, split_by='umd', split='test'))
