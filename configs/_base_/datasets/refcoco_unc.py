# RefCOCO, UNC partition (train / val / testA / testB), in the public REFER
# layout (refs and instances as released with the REFER toolkit, images from
# COCO 2014 train, shared by RefCOCO, RefCOCO+ and RefCOCOg):
#   data/refcoco/refs(unc).p
#   data/refcoco/instances.json
#   data/coco/train2014/COCO_train2014_*.jpg
# The image folder is given relative to data_root (img_folder below); point
# it elsewhere with --cfg-options for each dataloader.
# val uses 'val', test uses 'testA'; evaluate testB with
#   --cfg-options test_dataloader.dataset.split=testB
# Evaluation batches hold letterboxed inputs of one size; each sample keeps
# its own original-size GT and padding, so batch_size > 1 is fine.
dataset_type = 'ReferDataset'
data_root = 'data/refcoco'
split_by = 'unc'
img_folder = '../coco/train2014'
input_size = 416

train_pipeline = [
    dict(type='LoadReferImage'),
    dict(type='LoadReferMask'),
    dict(type='Letterbox', size=input_size),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackReferInputs'),
]
# the mask is loaded after resizing: metrics compare at original resolution
test_pipeline = [
    dict(type='LoadReferImage'),
    dict(type='Letterbox', size=input_size),
    dict(type='LoadReferMask'),
    dict(type='PackReferInputs'),
]
# refer_collate stacks each training batch's images and masks in the
# worker (two tensors cross to the main process instead of two per
# sample); the models' ReferDataPreProcessor takes such batches.
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    collate_fn=dict(type='sera_mm.refer_collate'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split_by=split_by,
        split='train',
        data_prefix=dict(img_path=img_folder),
        train_mode='ref',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split_by=split_by,
        split='val',
        data_prefix=dict(img_path=img_folder),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split_by=split_by,
        split='testA',
        data_prefix=dict(img_path=img_folder),
        test_mode=True,
        pipeline=test_pipeline))
val_evaluator = dict(type='ReferMetric')
test_evaluator = val_evaluator
