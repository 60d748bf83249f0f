# RefCOCO (unc) + RefCOCO+ (unc) + RefCOCOg (umd) trained at once, in the
# public REFER layout, images from COCO 2014 train (shared by all three):
#   data/refcoco/refs(unc).p    data/refcoco/instances.json
#   data/refcoco+/refs(unc).p   data/refcoco+/instances.json
#   data/refcocog/refs(umd).p   data/refcocog/instances.json
#   data/coco/train2014/COCO_train2014_*.jpg
# The three datasets annotate the same COCO images with independently drawn
# partitions: an image of one dataset's val/test split can be a training
# image of another. MixedReferDataset therefore drops from every training
# set each image that any split in `eval_sets` holds (logging how many
# images, refs and expressions each set lost). `eval_sets` is also what
# the test run evaluates, so what is evaluated and what is excluded cannot
# drift apart: edit it (e.g. add RefCOCOg google's val) in one place.
# Validation evaluates the three val splits, the test run all eight
# splits, each in one run with one metric table per dataset (keys
# '<dataset>/<split>/<metric>', e.g. 'refcoco_unc/testA/mIoU', plus
# 'mean/mIoU' over the evaluated splits).
# Check a mixture of your own with
#   python tools/dataset_converters/check_leakage.py --config CONFIG
input_size = 416
img_folder = '../coco/train2014'
refcoco = dict(type='ReferDataset', data_root='data/refcoco', split_by='unc',
               data_prefix=dict(img_path=img_folder))
refcoco_plus = dict(type='ReferDataset', data_root='data/refcoco+',
                    split_by='unc', data_prefix=dict(img_path=img_folder))
refcocog = dict(type='ReferDataset', data_root='data/refcocog',
                split_by='umd', data_prefix=dict(img_path=img_folder))
val_sets = [
    dict(refcoco, split='val'),
    dict(refcoco_plus, split='val'),
    dict(refcocog, split='val'),
]
eval_sets = val_sets + [
    dict(refcoco, split='testA'),
    dict(refcoco, split='testB'),
    dict(refcoco_plus, split='testA'),
    dict(refcoco_plus, split='testB'),
    dict(refcocog, split='test'),
]

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
        type='MixedReferDataset',
        datasets=[
            dict(refcoco, split='train', train_mode='ref'),
            dict(refcoco_plus, split='train', train_mode='ref'),
            dict(refcocog, split='train', train_mode='ref'),
        ],
        exclude=eval_sets,
        match_by='image_id',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ConcatReferDataset', datasets=val_sets,
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ConcatReferDataset', datasets=eval_sets,
        pipeline=test_pipeline))
# masks (mIoU, oIoU, Prec@X) and boxes from masks (BoxAcc@0.5: referring
# expression comprehension accuracy) per split
val_evaluator = dict(
    type='PerSetMetric',
    metric=[dict(type='ReferMetric'), dict(type='ReferBoxMetric')],
    mean_keys=('mIoU', 'oIoU', 'BoxAcc@0.5'))
test_evaluator = val_evaluator
