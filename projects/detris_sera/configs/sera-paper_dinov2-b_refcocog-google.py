# The SERA paper's model on RefCOCOg (google: train / val; testing uses val),
# the G-Ref split its table reports.
_base_ = ['./sera-paper_dinov2-b_refcoco.py']
data_root = 'data/refcocog'
train_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
val_dataloader = dict(dataset=dict(data_root=data_root, split_by='google'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, split_by='google', split='val'))
