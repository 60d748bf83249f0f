# The built-in synthetic referring benchmark (REFER layout, split_by
# 'synthetic': train / val / testA / testB). Generated into data/synthetic on
# first use (about 30 s for 2,000 images), or beforehand with
#   python tools/dataset_converters/make_synthetic_refer.py --out data/synthetic
# testB holds colour-shape pairs never seen in training:
#   --cfg-options test_dataloader.dataset.split=testB
dataset_type = 'SyntheticReferDataset'
data_root = 'data/synthetic'
input_size = 160
generate = dict(num_images=2000, seed=0, image_size=256)

# The decoded images are cached in each dataloader worker (the 2,000
# training images take about 393 MB at 256 px): every epoch after the first
# copies them instead of reading and decoding the PNG files again.
train_pipeline = [
    dict(type='LoadReferImage', cache_max_bytes=512 * 1024**2),
    dict(type='LoadReferMask'),
    dict(type='Letterbox', size=input_size),
    dict(type='PackReferInputs'),
]
test_pipeline = [
    dict(type='LoadReferImage', cache_max_bytes=128 * 1024**2),
    dict(type='Letterbox', size=input_size),
    dict(type='LoadReferMask'),
    dict(type='PackReferInputs'),
]
# refer_collate stacks each training batch's images and masks in the
# worker (two tensors cross to the main process instead of two per
# sample); the models' ReferDataPreProcessor takes such batches.
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    collate_fn=dict(type='sera_mm.refer_collate'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        generate=generate,
        train_mode='ref',
        pipeline=train_pipeline))
# evaluation at batch 64: fewer, larger forward passes (each sample's
# prediction is computed independently of the others in its batch)
val_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        generate=generate,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='testA',
        generate=generate,
        test_mode=True,
        pipeline=test_pipeline))
val_evaluator = dict(type='ReferMetric')
test_evaluator = val_evaluator
