# RefCOCO (unc) as CRIS's data preparation leaves it (also used by ETRIS and
# DETRIS), read without converting or downloading again:
#   datasets/anns/refcoco/{train,val,testA,testB}.json
#   datasets/masks/refcoco/<segment_id>.png
#   datasets/images/train2014/COCO_train2014_*.jpg
# (CRIS's tools/data_process.py --generate_mask; its lmdb files are not
# needed). Other datasets of that folder: dataset='refcoco+' (train / val /
# testA / testB), 'refcocog_u' (train / val / test), 'refcocog_g' (train /
# val), e.g. for every dataloader
#   --cfg-options train_dataloader.dataset.dataset=refcocog_u ...
# test uses testA; evaluate another split with
#   --cfg-options test_dataloader.dataset.split=testB
dataset_type = 'CRISReferDataset'
data_root = 'datasets'
cris_dataset = 'refcoco'
img_folder = 'images/train2014'
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
        dataset=cris_dataset,
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
        dataset=cris_dataset,
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
        dataset=cris_dataset,
        split='testA',
        data_prefix=dict(img_path=img_folder),
        test_mode=True,
        pipeline=test_pipeline))
val_evaluator = dict(type='ReferMetric')
test_evaluator = val_evaluator
