# Runtime shared by every SERA-MM config (mmseg 1.x style).
default_scope = 'sera_mm'
custom_imports = dict(imports=['sera_mm.plugin'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # 'nccl' on GPUs; the launchers switch to 'gloo' on CPU.
    dist_cfg=dict(backend='nccl'),
    # glibc malloc keeps freed memory for the next step instead of giving
    # it back to the kernel and faulting it in again (no effect on results;
    # None leaves the allocator alone): sera_mm/utils/allocator.py
    malloc=dict(mmap_threshold=32 * 1024**2, trim_threshold=1024**3,
                top_pad=256 * 1024**2),
)
vis_backends = [dict(type='LocalVisBackend')]
# MMSegmentation's local visualizer, drawing referring pictures (image +
# expression | GT | prediction | router weights)
visualizer = dict(
    type='ReferLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Saves only the trained parameters (PET); merged with the pretrained
    # weights on load.
    checkpoint=dict(
        type='PETCheckpointHook', by_epoch=False, interval=1000,
        max_keep_ckpts=2, save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # Pictures of predictions: image + expression | GT | prediction | router
    # weights; off unless a config or tools/test.py --show-dir enables it.
    visualization=dict(type='ReferVisualizationHook', draw=False))
