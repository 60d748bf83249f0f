# Your own referring data, converted by
#   python tools/dataset_converters/make_refer.py ROWS --images IMAGES \
#       --masks MASKS --out data/my_refer --copy-images
# into the REFER layout (docs/en/user_guides/custom_data.md):
#   data/my_refer/refs(custom).json   (or refs(custom).p)
#   data/my_refer/instances.json
#   data/my_refer/images/...          (--copy-images; else set img_folder to
#                                      the image folder, relative to
#                                      data_root, that the tool prints)
# split_by 'custom' has the splits train / val / test (and testA / testB).
# Copy this file and set data_root (and img_folder) in the copy, or point
# each dataloader at the data with --cfg-options
#   train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
#   test_dataloader.dataset.data_root=DIR
dataset_type = 'ReferDataset'
data_root = 'data/my_refer'
split_by = 'custom'
img_folder = 'images'
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
        split='test',
        data_prefix=dict(img_path=img_folder),
        test_mode=True,
        pipeline=test_pipeline))
# masks (mIoU, oIoU, Prec@X) and boxes from masks (BoxAcc@0.5)
val_evaluator = [dict(type='ReferMetric'), dict(type='ReferBoxMetric')]
test_evaluator = val_evaluator
