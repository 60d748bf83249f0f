"""GPU checks (pytest marker ``cuda``): one training step and one
evaluation step of every shipped RefCOCO-family config at its real geometry
(random weights of the configured architecture, no download), under fp16
autocast with loss scaling, wrapped in DistributedDataParallel over NCCL
with one process and SyncBatchNorm active; peak GPU memory is printed.

They need CUDA and skip without it (optional hardware): run them where a
GPU is, ``python -m pytest -m cuda tests/test_cuda.py -s``.
"""
import glob
import os
import os.path as osp
import socket
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

REFCOCO = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', 'sera', '*.py')) +
    glob.glob(osp.join(ROOT, 'projects', '*', 'configs', '*.py'))
    if 'refcoco' in osp.basename(p))

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='needs a CUDA GPU'),
]


def _rel(p):
    return osp.relpath(p, ROOT).replace(osp.sep, '/')


@pytest.fixture(scope='module')
def nccl_group():
    import torch.distributed as dist
    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
        dist.init_process_group('nccl', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _batch(cfg, device, b=2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    size = tuple(cfg.model.data_preprocessor['size'])
    samples = []
    for i in range(b):
        s = SegDataSample(metainfo=dict(
            text=['the man on the left', 'a red cup'][i % 2],
            img_shape=size, ori_shape=size, pad_shape=size,
            img_padding_size=[0, 0, 0, 0]))
        mask = torch.zeros(1, *size, dtype=torch.long)
        mask[:, size[0] // 4:size[0] // 2, size[1] // 4:size[1] // 2] = 1
        s.gt_sem_seg = PixelData(data=mask)
        samples.append(s.to(device))
    return torch.randn(b, 3, *size, device=device), samples


@pytest.mark.parametrize('path', REFCOCO, ids=_rel)
def test_refcoco_config_trains_and_evaluates_on_gpu(path, nccl_group):
    from mmengine.config import Config
    from torch.nn.parallel import DistributedDataParallel

    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    from sera_mm.utils.config_utils import random_init_cfg
    register_all_modules()
    cfg = Config.fromfile(path)
    for name in cfg.get('custom_imports', {}).get('imports', []):
        __import__(name)
    device = torch.device('cuda', 0)
    torch.cuda.reset_peak_memory_stats(device)
    model = MODELS.build(random_init_cfg(cfg.model, force=True))
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
    has_bn = any(isinstance(m, torch.nn.SyncBatchNorm)
                 for m in model.modules())
    ddp = DistributedDataParallel(model, device_ids=[0],
                                  find_unused_parameters=False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    scaler = torch.amp.GradScaler('cuda')
    inputs, samples = _batch(cfg, device)
    model.train()
    with torch.autocast('cuda', dtype=torch.float16):
        losses = ddp(inputs, samples, mode='loss')
        total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    assert torch.isfinite(total)
    scaler.scale(total).backward()
    scaler.step(opt)
    scaler.update()
    model.eval()
    with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16):
        out = model.predict(inputs, samples)
    assert out[0].pred_sem_seg.data.shape[-2:] == inputs.shape[-2:]
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    print(f'\n{_rel(path)}: peak GPU memory {peak:.0f} MiB at batch 2, '
          f'SyncBN layers: {has_bn}')
