# Tiny SERA on a tiny synthetic dataset: random weights (no download), runs
# a full train/val cycle on CPU in seconds. Used by the tests and smoke runs.
_base_ = [
    '../_base_/models/sera_vitb16_clip.py', '../_base_/datasets/synthetic.py',
    '../_base_/default_runtime.py'
]

# the ViT-B/16 model's architecture, shrunk (random weights: no download)
img_size = 64
input_size = img_size  # read by apply_input_size
data_preprocessor = dict(size=(img_size, img_size))
tiny_vit = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                projection_dim=32)
model = dict(
    data_preprocessor=data_preprocessor,
    text_encoder=dict(
        pretrained=None, config=dict(tiny_vit, num_hidden_layers=2)),
    backbone=dict(
        pretrained=None,
        config=dict(tiny_vit, num_hidden_layers=4, image_size=img_size),
        out_indices=(1, 3),
        adapter=dict(hidden_channels=16, router=dict(hidden_channels=16),
                     num_heads=2),
        adapter_indices=(1, 3)),
    neck=dict(channels=32, router=dict(hidden_channels=16), num_heads=2),
    decode_head=dict(channels=32, num_layers=1, num_heads=2, ffn_channels=64,
                     dropout=0.0))

# ---------------------------------------------------------------- data
# the synthetic benchmark's data config at 64 px, 24 images
data_root = 'data/synthetic_tiny'
generate = dict(num_images=24, seed=0, image_size=img_size)
train_pipeline = [
    dict(type='LoadReferImage'),
    dict(type='LoadReferMask'),
    dict(type='Letterbox', size=img_size),
    dict(type='PackReferInputs')
]
test_pipeline = [
    dict(type='LoadReferImage'),
    dict(type='Letterbox', size=img_size),
    dict(type='LoadReferMask'),
    dict(type='PackReferInputs')
]
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
test_set = dict(data_root=data_root, generate=generate, split='val',
                pipeline=test_pipeline)
train_dataloader = dict(
    **loader,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, generate=generate,
                 pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=test_set)
test_dataloader = dict(**loader, dataset=test_set)

# ---------------------------------------------------------------- schedule
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-2))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(
        type='PETCheckpointHook', by_epoch=False, interval=4,
        max_keep_ckpts=1, save_best=None))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
