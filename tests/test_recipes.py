"""Every RefCOCO-family config trains with the recipe its name and comment
give: the schedule's source, the batch its learning rate was set for
(``auto_scale_lr``), a fixed seed and synchronised BatchNorm where the
source uses it."""
import glob
import os.path as osp
import sys

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

REFCOCO = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', 'sera', '*.py')) +
    glob.glob(osp.join(ROOT, 'projects', '*', 'configs', '*.py'))
    if 'refcoco' in osp.basename(p))
SCHEDULES = osp.join(ROOT, 'configs', '_base_', 'schedules')


def _rel(p):
    return osp.relpath(p, ROOT).replace(osp.sep, '/')


def test_schedule_files_are_what_they_are_named():
    names = sorted(osp.basename(p) for p in glob.glob(
        osp.join(SCHEDULES, '*_refcoco.py')))
    assert names == ['schedule_cris_50e_refcoco.py',
                     'schedule_etris_50e_refcoco.py',
                     'schedule_sera_50e_refcoco.py']
    for name, source, batch in (('cris', 'cris_r50.yaml', 64),
                                ('etris', 'bridge_v16.yaml', 32)):
        path = osp.join(SCHEDULES, f'schedule_{name}_50e_refcoco.py')
        cfg = Config.fromfile(path)
        with open(path) as f:
            assert source in f.read()  # the source config is cited
        opt = cfg.optim_wrapper
        assert opt.optimizer.type == 'Adam'
        assert opt.optimizer.lr == 1e-4
        assert opt.optimizer.weight_decay == 0.0
        assert opt.get('clip_grad') is None
        sched, = cfg.param_scheduler
        assert (sched.milestones, sched.gamma) == ([35], 0.1)
        assert cfg.train_cfg.max_epochs == 50
        assert cfg.auto_scale_lr.base_batch_size == batch
        assert cfg.sync_bn == 'torch'
        assert cfg.randomness.seed == 0
    own = Config.fromfile(osp.join(SCHEDULES, 'schedule_sera_50e_refcoco.py'))
    with open(osp.join(SCHEDULES, 'schedule_sera_50e_refcoco.py')) as f:
        assert "SERA-MM's own" in f.read()
    assert own.optim_wrapper.optimizer.type == 'AdamW'
    assert own.auto_scale_lr.base_batch_size == 16


@pytest.mark.parametrize('path', REFCOCO, ids=_rel)
def test_refcoco_config_names_its_batch_and_seed(path):
    cfg = Config.fromfile(path)
    assert cfg.auto_scale_lr.base_batch_size in (16, 32, 64), _rel(path)
    assert cfg.auto_scale_lr.enable is False
    assert cfg.randomness.seed == 0
    assert cfg.train_dataloader.batch_size == 8


@pytest.mark.parametrize('name,batch,ffn', [('cris_sera/configs/cris', 64,
                                             2048),
                                            ('etris_sera/configs/etris', 32,
                                             512)])
def test_cris_and_etris_configs_follow_their_recipes(name, batch, ffn):
    cfg = Config.fromfile(
        osp.join(ROOT, 'projects', f'{name}_vitb_refcoco.py'))
    assert cfg.optim_wrapper.optimizer.type == 'Adam'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.0
    assert cfg.optim_wrapper.get('clip_grad') is None
    assert cfg.auto_scale_lr.base_batch_size == batch
    assert cfg.sync_bn == 'torch'
    assert cfg.model.neck.norm_cfg == dict(type='BN')
    head = cfg.model.decode_head
    assert head.norm_cfg == dict(type='BN')
    # decoder at the neck's width (vis_dim 512), projector at 256
    assert (head.channels, head.proj_channels, head.ffn_channels) == (
        512, 256, ffn)


def test_paper_experts_config_has_no_clipping_and_syncs_bn():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'sera', 'sera_paper_dinov2-b_refcoco.py'))
    assert cfg.optim_wrapper.get('clip_grad') is None
    assert cfg.optim_wrapper.optimizer.type == 'Adam'
    assert cfg.sync_bn == 'torch'
