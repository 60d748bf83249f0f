"""Generalised RIS (gRefCOCO): the loader on a hand-made fixture, the
generalised synthetic generator's exactness, the no-target head, Dice on
empty targets, GReferMetric on hand-computed cases, visualisation of empty
masks and the two new configs."""
import copy
import json
import os
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from mmengine.config import Config  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from sera_mm.datasets import GReferDataset, SyntheticGReferDataset  # noqa
from sera_mm.datasets.synthetic import (GREFS_FILE, HELDOUT_PAIRS,  # noqa
                                        generate_synthetic_grefer,
                                        generate_synthetic_refer,
                                        is_synthetic_refer_complete,
                                        resolve)
from sera_mm.datasets.synthetic.scenes import Scene, SceneObject  # noqa
from sera_mm.evaluation import GReferMetric  # noqa: E402
from sera_mm.registry import METRICS, MODELS  # noqa: E402
from sera_mm.utils import register_all_modules  # noqa: E402
from sera_mm.utils.config_utils import random_init_cfg  # noqa: E402

register_all_modules()

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(ROOT, 'configs', 'sera', 'sera_tiny_synthetic.py')
GREF_MAIN = osp.join(ROOT, 'configs', 'sera',
                     'sera_mnv2-minilm_synthetic_gref.py')
GREF_VITB = osp.join(ROOT, 'configs', 'sera', 'sera_vitb_grefcoco.py')

# --------------------------------------------------------------------------
# gRefCOCO-format fixture

H1, W1 = 20, 30  # image 1
H2, W2 = 24, 16  # image 2


def _sent(sid, text):
    return dict(sent_id=sid, sent=text, raw=text, tokens=text.split())


def _poly_mask(poly, h, w):
    rle = mask_utils.merge(mask_utils.frPyObjects(poly, h, w))
    return mask_utils.decode(rle).astype(bool)


def _fixture_anns():
    """Annotations: 10 polygon, 12 uncompressed RLE, 13 polygon, 14 crowd
    polygon (image 1); 11 compressed RLE, 15 polygon (image 2)."""
    m11 = np.zeros((H2, W2), np.uint8, order='F')
    m11[2:6, 3:7] = 1
    rle11 = mask_utils.encode(m11)
    rle11['counts'] = rle11['counts'].decode('ascii')
    m12 = np.zeros((H1, W1), np.uint8)
    m12[0:2, 0:3] = 1
    flat = m12.flatten(order='F')
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            run, cur = 0, v
        run += 1
    counts.append(run)
    return [
        dict(id=10, image_id=1, category_id=1, iscrowd=0,
             segmentation=[[5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]]),
        dict(id=11, image_id=2, category_id=2, iscrowd=0, segmentation=rle11),
        dict(id=12, image_id=1, category_id=1, iscrowd=0,
             segmentation=dict(size=[H1, W1], counts=counts)),
        dict(id=13, image_id=1, category_id=2, iscrowd=0,
             segmentation=[[20.0, 10.0, 28.0, 10.0, 28.0, 18.0]]),
        dict(id=14, image_id=1, category_id=1, iscrowd=1,
             segmentation=[[0.0, 15.0, 4.0, 15.0, 4.0, 19.0, 0.0, 19.0]]),
        dict(id=15, image_id=2, category_id=1, iscrowd=0,
             segmentation=[[8.0, 12.0, 14.0, 12.0, 14.0, 20.0, 8.0, 20.0]]),
    ]


def _expected_masks():
    """Masks of each annotation decoded directly with pycocotools."""
    out = {}
    for a in _fixture_anns():
        h, w = (H1, W1) if a['image_id'] == 1 else (H2, W2)
        seg = a['segmentation']
        if isinstance(seg, list):
            out[a['id']] = _poly_mask(seg, h, w)
        elif isinstance(seg['counts'], list):
            out[a['id']] = mask_utils.decode(
                mask_utils.frPyObjects(seg, h, w)).astype(bool)
        else:
            out[a['id']] = mask_utils.decode(
                dict(size=seg['size'],
                     counts=seg['counts'].encode())).astype(bool)
    return out


def make_grefer(root, fmt='json', bad=None):
    """Six refs: multi-target (polygon + uncompressed RLE), no-target with
    and without the flag, multi-target (RLE + polygon) on image 2, a scalar
    single-target ref and one listing a crowd annotation. ``bad`` breaks
    ref 3: 'missing' (an unknown ann id), 'mixed' ([-1, 13]), 'image' (an
    annotation of the other image), 'flag' (no_target contradicts ann_id),
    'type' (a string id), 'no_key' (no ann_id)."""
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    cv2.imwrite(osp.join(root, 'images', 'a.png'),
                np.full((H1, W1, 3), 90, np.uint8))
    cv2.imwrite(osp.join(root, 'images', 'b.png'),
                np.full((H2, W2, 3), 180, np.uint8))
    instances = dict(
        images=[dict(id=1, file_name='a.png', height=H1, width=W1),
                dict(id=2, file_name='b.png', height=H2, width=W2)],
        annotations=_fixture_anns(),
        categories=[dict(id=1, name='dog'), dict(id=2, name='cat')])
    refs = [
        dict(ref_id=0, ann_id=[10, 12], category_id=[1, 1], no_target=False,
             image_id=1, split='train', sent_ids=[0, 1],
             sentences=[_sent(0, 'both dogs'), _sent(1, 'the two dogs')]),
        dict(ref_id=1, ann_id=[-1], category_id=[-1], no_target=True,
             image_id=1, split='train', sent_ids=[2],
             sentences=[_sent(2, 'the horse')]),
        dict(ref_id=2, ann_id=[11, 15], category_id=[2, 1], no_target=False,
             image_id=2, split='val', sent_ids=[3],
             sentences=[_sent(3, 'all animals')]),
        dict(ref_id=3, ann_id=13, category_id=2, image_id=1, split='val',
             sent_ids=[4], sentences=[_sent(4, 'the cat')]),
        dict(ref_id=4, ann_id=[-1], category_id=[-1], image_id=2,
             split='val', sent_ids=[5], sentences=[_sent(5, 'the bird')]),
        dict(ref_id=5, ann_id=[10, 14], category_id=[1, 1], no_target=False,
             image_id=1, split='testA', sent_ids=[6],
             sentences=[_sent(6, 'the dogs')]),
    ]
    broken = {'missing': dict(ann_id=[13, 99]), 'mixed': dict(ann_id=[-1, 13]),
              'image': dict(ann_id=[13, 11]),
              'flag': dict(ann_id=[13], no_target=True),
              'type': dict(ann_id=['13']), 'no_key': None}
    if bad == 'no_key':
        del refs[3]['ann_id']
    elif bad is not None:
        refs[3].update(broken[bad])
    if fmt == 'json':
        with open(osp.join(root, 'grefs(unc).json'), 'w') as f:
            json.dump(refs, f)
    else:
        with open(osp.join(root, 'grefs(unc).p'), 'wb') as f:
            pickle.dump(refs, f, protocol=2)
    with open(osp.join(root, 'instances.json'), 'w') as f:
        json.dump(instances, f)
    return root


TEST_PIPE = [dict(type='LoadReferImage'), dict(type='Letterbox', size=32),
             dict(type='LoadReferMask'), dict(type='PackReferInputs')]


def _build(root, **kw):
    args = dict(data_root=str(root), split='val', test_mode=True,
                data_prefix=dict(img_path='images'), pipeline=TEST_PIPE)
    args.update(kw)
    return GReferDataset(**args)


def _by_sent(ds):
    out = {}
    for i in range(len(ds)):
        item = ds[i]
        out[item['data_samples'].sent_id] = item['data_samples']
    return out


@pytest.mark.parametrize('fmt', ['json', 'pickle'])
def test_loader_masks_and_metainfo(tmp_path, fmt):
    make_grefer(str(tmp_path), fmt)
    masks = _expected_masks()
    ds = _build(tmp_path, split='train')
    assert ds.refs_file == ('grefs(unc).json' if fmt == 'json'
                            else 'grefs(unc).p')
    assert ds.metainfo['dataset_name'] == f'{tmp_path.name}_unc'
    got = _by_sent(ds)
    assert set(got) == {0, 1, 2}
    multi = got[0]
    # polygon + uncompressed RLE: their union, at the original size
    assert np.array_equal(multi.gt_sem_seg.data[0].numpy() > 0,
                          masks[10] | masks[12])
    assert multi.no_target is False and multi.target_count == 2
    assert multi.ann_id == [10, 12] and multi.category_id == [1, 1]
    assert multi.expr_type == 'multi'
    empty = got[2]
    assert empty.no_target is True and empty.target_count == 0
    assert empty.ann_id == [-1] and empty.expr_type == 'no_target'
    assert tuple(empty.gt_sem_seg.data.shape) == (1, H1, W1)
    assert int(empty.gt_sem_seg.data.sum()) == 0

    val = _by_sent(_build(tmp_path))
    # compressed RLE + polygon on image 2
    assert np.array_equal(val[3].gt_sem_seg.data[0].numpy() > 0,
                          masks[11] | masks[15])
    # a scalar ann_id is a one-element list
    assert val[4].ann_id == [13] and val[4].category_id == [2]
    assert val[4].target_count == 1 and val[4].expr_type == 'single'
    assert np.array_equal(val[4].gt_sem_seg.data[0].numpy() > 0, masks[13])
    # no no_target flag: inferred from ann_id [-1]
    assert val[5].no_target is True and int(val[5].gt_sem_seg.data.sum()) == 0


def test_loader_train_modes_crowd_and_defaults(tmp_path):
    make_grefer(str(tmp_path), 'pickle')
    masks = _expected_masks()
    train = dict(split='train', test_mode=False, pipeline=[])
    assert len(_build(tmp_path, **train)) == 2  # refs
    assert len(_build(tmp_path, train_mode='sentence', **train)) == 3
    # crowd annotation 14 is left out of the union (as ReLA), or kept
    crowd = _build(tmp_path, split='testA')[0]['data_samples']
    assert crowd.ann_id == [10, 14] and crowd.target_count == 2
    assert np.array_equal(crowd.gt_sem_seg.data[0].numpy() > 0, masks[10])
    kept = _build(tmp_path, split='testA', skip_crowd=False)[0]
    assert np.array_equal(kept['data_samples'].gt_sem_seg.data[0].numpy() > 0,
                          masks[10] | masks[14])
    untyped = _build(tmp_path, derive_expr_type=False)[0]['data_samples']
    assert untyped.expr_type is None


@pytest.mark.parametrize('bad,error,pattern', [
    ('missing', KeyError, r'ref_id 3: annotation id 99 is not in'),
    ('mixed', ValueError, r'ref_id 3: ann_id \[-1, 13\] mixes -1'),
    ('image', ValueError, r'ref_id 3: annotation id 11 belongs to image 2'),
    ('flag', ValueError, r'ref_id 3: no_target=True contradicts ann_id'),
    ('type', ValueError, r"ref_id 3: ann_id '13' is not an integer"),
    ('no_key', KeyError, r'ref_id 3: no ann_id'),
])
def test_loader_bad_ann_id_names_ref(tmp_path, bad, error, pattern):
    make_grefer(str(tmp_path), 'json', bad=bad)
    with pytest.raises(error, match=pattern):
        _build(tmp_path)


def test_loader_missing_files_and_unsafe_pickle(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'grefs\(unc\)\.json.*'
                       'gRefCOCO layout'):
        _build(tmp_path)
    make_grefer(str(tmp_path), 'pickle')

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))

    with open(tmp_path / 'grefs(unc).p', 'wb') as f:
        pickle.dump([Evil()], f, protocol=2)
    from sera_mm.utils.safe_pickle import UnsafePickleError
    with pytest.raises(UnsafePickleError, match='refused'):
        _build(tmp_path)


def test_grefcoco_dataset_config_batches(tmp_path):
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets',
                                   'grefcoco_unc.py'))
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[name].dataset
        assert ds.type == 'GReferDataset' and ds.split_by == 'unc'
        assert osp.normpath(osp.join(ds.data_root, ds.data_prefix.img_path)) \
            == osp.join('data', 'coco', 'train2014')
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == \
        'GReferMetric'
    make_grefer(str(tmp_path), 'json')
    loader = cfg.val_dataloader.copy()
    loader.update(num_workers=0, persistent_workers=False, batch_size=3)
    loader.dataset.update(data_root=str(tmp_path),
                          data_prefix=dict(img_path='images'))
    batch = next(iter(Runner.build_dataloader(loader)))
    assert all(tuple(x.shape) == (3, 416, 416) for x in batch['inputs'])
    flags = [s.no_target for s in batch['data_samples']]
    assert sorted(flags) == [False, False, True]
    for s in batch['data_samples']:
        assert tuple(s.gt_sem_seg.data.shape[-2:]) == s.ori_shape
        assert (int(s.gt_sem_seg.data.sum()) == 0) == s.no_target


# --------------------------------------------------------------------------
# generalised synthetic benchmark

GSIZE = 96


@pytest.fixture(scope='module')
def gref_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('gref') / 'synthetic_gref')
    generate_synthetic_grefer(root, num_images=30, seed=0, image_size=GSIZE,
                              progress=False)
    return root


def _load_gref(root):
    with open(osp.join(root, GREFS_FILE)) as f:
        refs = json.load(f)
    with open(osp.join(root, 'instances.json')) as f:
        inst = json.load(f)
    return refs, inst


def _filter(flt):
    return [tuple(kv) for kv in flt]


def _independent_targets(desc, query, h, w):
    """(possible, sure) object indices of a generalised query, recomputed
    from the scene description with its own formulas (margin 6% of the
    side; occlusion 1% possible / 6% definite)."""
    m = 0.06 * max(h, w)
    objs = desc['objects']

    def match(o, flt):
        return all(o[k] == v for k, v in _filter(flt))

    cands = [o for o in objs if match(o, query['filter'])]
    kind = query['kind']
    if kind == 'attribute':
        s = {o['index'] for o in cands}
        return s, s
    if kind == 'region':
        def score(o):
            x, y = o['cx'], o['cy']
            sides = dict(left=w / 2 - x, right=x - w / 2, top=h / 2 - y,
                         bottom=y - h / 2)
            r = query['region']
            if r in sides:
                return sides[r]
            if r == 'centre':
                return 0.2 * min(w, h) - max(abs(x - w / 2), abs(y - h / 2))
            a, b = r.split(' ')
            return min(sides[a], sides[b])
        return ({o['index'] for o in cands if score(o) > -m},
                {o['index'] for o in cands if score(o) > m})
    if kind == 'relation':
        anchors = [o for o in objs if match(o, query['anchor'])]
        assert len(anchors) == 1, query  # generated anchors are unique
        a = anchors[0]
        d = dict(left=lambda o: a['cx'] - o['cx'],
                 right=lambda o: o['cx'] - a['cx'],
                 above=lambda o: a['cy'] - o['cy'],
                 below=lambda o: o['cy'] - a['cy'])[query['rel']]
        others = [o for o in cands if o['index'] != a['index']]
        return ({o['index'] for o in others if d(o) > -m},
                {o['index'] for o in others if d(o) > m})
    if kind == 'occlusion':
        assert query['rel'] == 'hidden'
        hid = {o['index']: 1 - o['visible_area'] / o['full_area']
               for o in cands}
        return ({i for i, v in hid.items() if v >= 0.01},
                {i for i, v in hid.items() if v >= 0.06})
    raise AssertionError(f'unexpected kind {kind}')


def _scene_from(desc, h, w):
    objs = [SceneObject(o['index'], o['shape'], o['colour'], o['size'],
                        o['thickness'], o['cx'], o['cy'], o['radius'], None,
                        None, full_area=o['full_area'],
                        visible_area=o['visible_area'])
            for o in desc['objects']]
    return Scene(image=np.zeros((h, w, 3), np.uint8), objects=objs,
                 background='-', cover=np.asarray(desc['cover']))


def _tuplify(query):
    out = {}
    for k, v in query.items():
        out[k] = tuple(tuple(x) for x in v) if k in ('filter', 'anchor') \
            else v
    return out


def test_generator_every_ref_names_exactly_its_targets(gref_root):
    refs, inst = _load_gref(gref_root)
    images = {im['id']: im for im in inst['images']}
    anns = {a['id']: a for a in inst['annotations']}
    heldout = {tuple(p) for p in HELDOUT_PAIRS}
    seen = {'multi': 0, 'no_target': 0, 'single': 0}
    kinds = set()
    for ref in refs:
        im = images[ref['image_id']]
        desc, h, w = im['scene'], im['height'], im['width']
        ann_of = {o['index']: o['ann_id'] for o in desc['objects']}
        by_ann = {o['ann_id']: o for o in desc['objects']}
        for a in ref['ann_id']:
            assert a == -1 or anns[a]['image_id'] == ref['image_id']
        if ref['expr_type'] == 'no_target':
            assert ref['ann_id'] == [-1] and ref['no_target'] is True
        else:
            assert -1 not in ref['ann_id'] and ref['no_target'] is False
        for sent in ref['sentences']:
            q = sent['query']
            assert sent['expr_type'] == ref['expr_type']
            if ref['expr_type'] in ('multi', 'no_target'):
                kinds.add((ref['expr_type'], q['kind']))
                possible, sure = _independent_targets(desc, q, h, w)
                if ref['expr_type'] == 'no_target':
                    assert possible == set(), (sent['sent'], possible)
                    if ref['split'] != 'testB' and q['kind'] == 'attribute':
                        d = dict(_filter(q['filter']))
                        assert (d.get('colour'), d.get('shape')) not in \
                            heldout
                    seen['no_target'] += 1
                else:
                    assert possible == sure, sent['sent']  # no near-tie
                    assert len(possible) >= 2
                    assert sorted(ann_of[i] for i in possible) == \
                        sorted(ref['ann_id']), sent['sent']
                    assert all(by_ann[a]['referable'] for a in ref['ann_id'])
                    if ref['split'] == 'testB':
                        assert any((by_ann[a]['colour'], by_ann[a]['shape'])
                                   in heldout for a in ref['ann_id'])
                    seen['multi'] += 1
            else:  # single target: the REFER variant's own resolvers
                scene = _scene_from(desc, h, w)
                target = {o['index'] for o in desc['objects']
                          if o['ann_id'] == ref['ann_id'][0]}
                assert resolve(scene, _tuplify(q)) == target, sent['sent']
                seen['single'] += 1
    assert min(seen.values()) >= 10, seen
    assert {k for t, k in kinds if t == 'multi'} >= {'attribute', 'relation'}
    assert {k for t, k in kinds if t == 'no_target'} >= {
        'attribute', 'region', 'relation'}


def test_generator_summary_determinism_and_shared_images(gref_root,
                                                         tmp_path):
    refs, _ = _load_gref(gref_root)
    with open(osp.join(gref_root, '.complete')) as f:
        summary = json.load(f)
    assert summary['variant'] == 'gref'
    types = {}
    for r in refs:
        types[r['expr_type']] = types.get(r['expr_type'], 0) + 1
    assert summary['refs_per_type'] == {t: types.get(t, 0)
                                        for t in summary['refs_per_type']}
    assert types['multi'] >= 5 and types['no_target'] >= 5
    assert is_synthetic_refer_complete(gref_root, GREFS_FILE)
    assert not is_synthetic_refer_complete(gref_root)  # no refs pickle

    def digest(root):
        out = {}
        for dp, _, files in os.walk(root):
            for name in files:
                with open(osp.join(dp, name), 'rb') as f:
                    out[osp.relpath(osp.join(dp, name), root)] = f.read()
        return out

    kw = dict(num_images=6, image_size=64, progress=False)
    a, b, c = (str(tmp_path / n) for n in 'abc')
    generate_synthetic_grefer(a, seed=0, **kw)
    generate_synthetic_grefer(b, seed=0, **kw)
    generate_synthetic_grefer(c, seed=1, **kw)
    assert digest(a) == digest(b)
    assert digest(a)[GREFS_FILE] != digest(c)[GREFS_FILE]
    # the same images as the REFER variant with the same seed
    plain = str(tmp_path / 'plain')
    generate_synthetic_refer(plain, seed=0, **kw)
    da, dp = digest(a), digest(plain)
    pngs = [k for k in dp if k.endswith('.png')]
    assert pngs and all(da[k] == dp[k] for k in pngs)
    # a folder holding the other variant is not reused nor touched
    with pytest.raises(FileExistsError):
        generate_synthetic_grefer(plain, seed=0, **kw)


def test_synthetic_gref_dataset_reads_generated(gref_root):
    pipe = [dict(type='LoadReferImage'), dict(type='Letterbox', size=32),
            dict(type='LoadReferMask'), dict(type='PackReferInputs')]
    ds = SyntheticGReferDataset(data_root=gref_root, split='train',
                                test_mode=True, pipeline=pipe)
    assert ds.metainfo['dataset_name'] == 'synthetic_gref'
    found = set()
    for i in range(len(ds)):
        s = ds[i]['data_samples']
        area = int(s.gt_sem_seg.data.sum())
        assert (area == 0) == s.no_target
        assert (s.target_count >= 2) == (s.expr_type == 'multi')
        found.add(s.expr_type)
        if len(found) == 7:
            break
    assert {'multi', 'no_target'} <= found


# --------------------------------------------------------------------------
# model: no-target head and Dice on empty targets


def _tiny_model(no_target=True, **head):
    cfg = Config.fromfile(TINY).model
    if no_target:
        cfg['decode_head']['no_target_head'] = dict(
            type='NoTargetHead', hidden_channels=16, **head)
    torch.manual_seed(0)
    return MODELS.build(random_init_cfg(cfg))


def _samples(masks, no_target=None, size=64):
    out = []
    for i, m in enumerate(masks):
        s = SegDataSample()
        meta = dict(text=f'the shapes {i}', sent_id=i, ori_shape=(size, size),
                    img_shape=(size, size), pad_shape=(size, size),
                    img_padding_size=[0, 0, 0, 0])
        if no_target is not None:
            meta['no_target'] = no_target[i]
        s.set_metainfo(meta)
        s.gt_sem_seg = PixelData(data=m)
        out.append(s)
    return out


def _two_masks(size=64):
    full = torch.zeros(1, size, size, dtype=torch.long)
    full[:, 5:20, 5:20] = 1
    full[:, 40:60, 30:50] = 1
    return [full, torch.zeros(1, size, size, dtype=torch.long)]


@pytest.mark.parametrize('logit,empty', [(20.0, True), (-20.0, False)])
def test_no_target_head_decides_the_prediction(logit, empty):
    model = _tiny_model().eval()
    last = model.decode_head.no_target_head.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(logit)
        # a mask head that answers "everything"
        model.decode_head.kernel_gen.weight.zero_()
        model.decode_head.kernel_gen.bias.zero_()
        model.decode_head.kernel_gen.bias[-1] = 10.0
    data = model.data_preprocessor(dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                for _ in range(2)],
        data_samples=_samples(_two_masks())), False)
    with torch.no_grad():
        out = model(**data, mode='predict')
    for s in out:
        score = s.metainfo['no_target_score']
        assert score == pytest.approx(1.0 if empty else 0.0, abs=1e-6)
        # the logits carry the decision: constant -1e4 when it fires,
        # the mask head's ("everything") otherwise
        if empty:
            assert bool((s.seg_logits.data == -1e4).all())
            assert int(s.pred_sem_seg.data.sum()) == 0
        else:
            assert bool((s.seg_logits.data > 0).all())
            assert bool(s.pred_sem_seg.data.all())
        assert tuple(s.pred_sem_seg.data.shape) == (1, 64, 64)


def test_no_target_loss_and_labels():
    from sera_mm.models.heads import no_target_labels
    model = _tiny_model(loss_weight=0.5).train()
    samples = _samples(_two_masks(), no_target=[False, True])
    assert no_target_labels(samples).tolist() == [0.0, 1.0]
    # without the metainfo an empty ground truth means no target
    assert no_target_labels(_samples(_two_masks())).tolist() == [0.0, 1.0]
    data = model.data_preprocessor(dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                for _ in range(2)], data_samples=samples), True)
    losses = model(**data, mode='loss')
    assert {'loss_ce', 'loss_dice', 'loss_no_target', 'acc_no_target'} <= \
        set(losses)
    assert torch.isfinite(losses['loss_no_target'])
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    grads = [p.grad for p in model.decode_head.no_target_head.parameters()]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_without_the_head_nothing_changes():
    plain = _tiny_model(no_target=False).eval()
    assert plain.decode_head.no_target_head is None
    assert not any('no_target_head' in k for k in plain.state_dict())
    data = plain.data_preprocessor(dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)],
        data_samples=_samples(_two_masks()[:1])), False)
    with torch.no_grad():
        out = plain(**data, mode='predict')[0]
    assert 'no_target_score' not in out.metainfo
    assert torch.equal(out.pred_sem_seg.data,
                       (out.seg_logits.data.sigmoid() > 0.35).long())


def test_no_target_branch_keeps_the_head_contract():
    """The segmentor's loss and predict go through decode_head.loss /
    decode_head.predict only; the branch reports its score through the
    meta dicts it is given."""
    model = _tiny_model().eval()
    feats = (torch.randn(2, model.decode_head.in_channels, 8, 8),
             model.encode_text(['a', 'the red circle']))
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64)) for _ in range(2)]
    with torch.no_grad():
        logits = model.decode_head.predict(feats, metas, model.test_cfg)
    assert tuple(logits.shape) == (2, 1, 64, 64)
    assert all(0.0 <= m['no_target_score'] <= 1.0 for m in metas)
    samples = _samples(_two_masks(), no_target=[False, True])
    losses = model.decode_head.loss(feats, samples, None)
    assert {'loss_ce', 'loss_dice', 'loss_no_target', 'acc_no_target'} <= \
        set(losses)


def test_old_no_target_keys_load_and_old_argument_errors():
    model = _tiny_model()
    branch = model.decode_head.no_target_head.state_dict()
    # a state dict of the earlier layout: the branch on the segmentor
    old = {(k.replace('decode_head.no_target_head.', 'no_target_head.')):
           torch.full_like(v, 0.25) if k.startswith(
               'decode_head.no_target_head.') and v.is_floating_point()
           else v
           for k, v in model.state_dict().items()}
    assert any(k.startswith('no_target_head.') for k in old)
    fresh = _tiny_model()
    result = fresh.load_state_dict(old, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in fresh.decode_head.no_target_head.state_dict().items():
        if value.is_floating_point():
            assert bool((value == 0.25).all()), key
    assert set(branch) == set(
        fresh.decode_head.no_target_head.state_dict())
    cfg = Config.fromfile(TINY).model
    cfg['no_target_head'] = dict(type='NoTargetHead')
    with pytest.raises(ValueError, match='moved into the decode head'):
        MODELS.build(random_init_cfg(cfg))


def test_mmseg_dice_on_empty_target_and_smooth_dice():
    from mmseg.models.losses import DiceLoss

    from sera_mm.models.losses import SmoothDiceLoss
    empty = torch.zeros(2, 1, 8, 8)
    # mmseg's (V-Net) Dice: 1 on an empty target whatever the prediction,
    # with no gradient -- an empty prediction is not rewarded
    for value in (-20.0, 0.0, 20.0):
        logits = torch.full((2, 1, 8, 8), value, requires_grad=True)
        loss = DiceLoss(use_sigmoid=True)(logits, empty)
        assert float(loss.detach()) == pytest.approx(1.0)
        loss.backward()
        assert float(logits.grad.abs().sum()) == 0.0
    smooth = SmoothDiceLoss(smooth=1.0)
    assert float(smooth(torch.full((2, 1, 8, 8), -20.0), empty)) == \
        pytest.approx(0.0, abs=1e-6)
    logits = torch.full((2, 1, 8, 8), 3.0, requires_grad=True)
    loss = smooth(logits, empty)
    p2 = float(torch.sigmoid(torch.tensor(3.0))) ** 2 * 64
    assert float(loss.detach()) == pytest.approx(p2 / (p2 + 1.0), rel=1e-5)
    loss.backward()
    assert bool((logits.grad > 0).all())  # descent lowers the logits
    # smooth = 0, both empty: defined (0), not NaN
    zero = SmoothDiceLoss(smooth=0.0)(torch.full((1, 1, 4, 4), -1e4),
                                      torch.zeros(1, 1, 4, 4))
    assert float(zero) == 0.0
    # non-empty targets: smooth = 0 is mmseg's Dice with eps = 0 exactly;
    # smooth = 1 differs by less than 1 / (sum p^2 + sum t^2)
    torch.manual_seed(0)
    pred = torch.randn(3, 1, 16, 16)
    target = (torch.rand(3, 1, 16, 16) > 0.6).float()
    ref = DiceLoss(use_sigmoid=True, eps=0.0, reduction='none')(pred, target)
    ours = SmoothDiceLoss(smooth=0.0, reduction='none')(pred, target)
    assert torch.allclose(ref, ours, atol=1e-6)
    p = pred.sigmoid().flatten(1)
    bound = 1.0 / (p.pow(2).sum(1) + target.flatten(1).sum(1))
    diff = (SmoothDiceLoss(smooth=1.0, reduction='none')(pred, target) -
            ref).abs()
    assert bool((diff <= bound).all())


def test_head_dice_with_an_empty_ground_truth():
    from mmengine.registry import init_default_scope

    from sera_mm.models.heads import SERAHead
    init_default_scope('sera_mm')
    head = SERAHead(in_channels=8, channels=8, text_channels=8,
                    num_layers=1, num_heads=2, loss_decode=[
                        dict(type='CrossEntropyLoss', use_sigmoid=True),
                        dict(type='SmoothDiceLoss')])
    samples = _samples([torch.zeros(1, 16, 16, dtype=torch.long)], size=16)
    losses = head.loss_by_feat(torch.full((1, 1, 8, 8), -30.0), samples)
    assert float(losses['loss_dice']) == pytest.approx(0.0, abs=1e-6)
    losses = head.loss_by_feat(torch.full((1, 1, 8, 8), 5.0), samples)
    assert 0.9 < float(losses['loss_dice']) < 1.0


# --------------------------------------------------------------------------
# GReferMetric


def _mask(rows=None, cols=None, value=1):
    m = torch.zeros(1, 4, 4, dtype=torch.uint8)
    if rows is not None:
        m[0, rows[0]:rows[1], cols[0]:cols[1]] = value
    return m


def _s(pred, gt, sid, expr_type=None, no_target=None):
    out = dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt),
               sent_id=sid, ref_id=sid // 2, expr_type=expr_type)
    if no_target is not None:
        out['no_target'] = no_target
    return out


def _six():
    """s0 multi: I=4, U=8 (0.5); s1 single: I=U=4 (1); s2 single: I=12,
    U=16 (0.75, pred value 255); s3 multi: predicted empty, I=0, U=4 (0);
    s4 no-target predicted empty (1); s5 no-target, 2 predicted px (0)."""
    return [
        _s(_mask((0, 2), (0, 2)), _mask((0, 2), (0, 4)), 0, 'multi', False),
        _s(_mask((0, 2), (0, 2)), _mask((0, 2), (0, 2)), 1, 'single', False),
        _s(_mask((0, 3), (0, 4), 255), _mask((0, 4), (0, 4)), 2, 'single',
           False),
        _s(_mask(), _mask((2, 4), (2, 4)), 3, 'multi', False),
        _s(_mask(), _mask(), 4, 'no_target', True),
        _s(_mask((3, 4), (0, 2)), _mask(), 5, 'no_target', True),
    ]


SIX = {
    'gIoU': 3.25 / 6 * 100, 'cIoU': 20 / 34 * 100, 'N-acc': 50.0,
    'T-acc': 75.0, 'Prec@0.7': 50.0, 'Prec@0.8': 25.0, 'Prec@0.9': 25.0,
    'multi/gIoU': 25.0, 'multi/cIoU': 4 / 12 * 100, 'multi/T-acc': 50.0,
    'multi/Prec@0.7': 0.0, 'multi/Prec@0.8': 0.0, 'multi/Prec@0.9': 0.0,
    'multi/count': 2,
    'no_target/gIoU': 50.0, 'no_target/cIoU': 0.0, 'no_target/N-acc': 50.0,
    'no_target/count': 2,
    'single/gIoU': 87.5, 'single/cIoU': 80.0, 'single/T-acc': 100.0,
    'single/Prec@0.7': 100.0, 'single/Prec@0.8': 50.0,
    'single/Prec@0.9': 50.0, 'single/count': 2,
    'count': 6, 'no_target_count': 2,
}


def _assert(got, expected):
    assert set(got) == set(expected), set(got) ^ set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def _run(samples, **kw):
    metric = GReferMetric(**kw)
    metric.process({}, samples)
    return metric.compute_metrics(list(metric.results))


def test_metric_hand_computed():
    assert isinstance(METRICS.build(dict(type='GReferMetric')), GReferMetric)
    got = _run(_six())
    _assert(got, SIX)
    assert list(got)[0] == 'gIoU'


def test_metric_all_empty_and_all_targeted():
    both_empty = [_s(_mask(), _mask(), 0, no_target=True),
                  _s(_mask(), _mask(), 1, no_target=True)]
    _assert(_run(both_empty), {'gIoU': 100.0, 'cIoU': 100.0, 'N-acc': 100.0,
                               'count': 2, 'no_target_count': 2})
    one_wrong = [both_empty[0], _s(_mask((0, 1), (0, 1)), _mask(), 1)]
    # no metainfo flag: an empty ground truth is a no-target sample
    _assert(_run(one_wrong), {'gIoU': 50.0, 'cIoU': 0.0, 'N-acc': 50.0,
                              'count': 2, 'no_target_count': 2})
    targeted = [dict(s, expr_type=None) for s in _six()[:4]]
    _assert(_run(targeted), {'gIoU': 56.25, 'cIoU': 20 / 32 * 100,
                             'T-acc': 75.0, 'Prec@0.7': 50.0,
                             'Prec@0.8': 25.0, 'Prec@0.9': 25.0,
                             'count': 4, 'no_target_count': 0})
    _assert(_run(targeted, thresholds=(0.5, )),
            {'gIoU': 56.25, 'cIoU': 62.5, 'T-acc': 75.0, 'Prec@0.5': 50.0,
             'count': 4, 'no_target_count': 0})


def test_metric_two_ranks_merged_and_evaluator():
    samples = _six() + [_s(_mask((1, 4), (1, 4)), _mask((0, 4), (1, 4)), 6,
                           'single', False)]
    size = len(samples)
    single = GReferMetric()
    single.process({}, samples)
    expected = single.compute_metrics(list(single.results))
    # DefaultSampler pads 7 -> 8 with sample 0; rank r gets r::2
    indices = list(range(size)) + [0]
    ranks = [GReferMetric(), GReferMetric()]
    for r, metric in enumerate(ranks):
        for i in indices[r::2]:
            metric.process({}, [samples[i]])
    merged = []
    for res in zip(*[m.results for m in ranks]):
        merged.extend(res)
    merged = merged[:size]  # what mmengine's collect_results keeps
    assert merged == single.results
    assert GReferMetric().compute_metrics(merged) == pytest.approx(expected)
    # through mmengine's Evaluator with SegDataSamples
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator(GReferMetric())
    data = []
    for s in _six():
        ds = SegDataSample(metainfo=dict(
            sent_id=s['sent_id'], expr_type=s['expr_type'],
            no_target=s['no_target']))
        ds.pred_sem_seg = PixelData(data=s['pred_sem_seg']['data'])
        ds.gt_sem_seg = PixelData(data=s['gt_sem_seg']['data'])
        data.append(ds)
    evaluator.process(data[:4], {})
    evaluator.process(data[4:], {})
    _assert(evaluator.evaluate(6), SIX)


def test_metric_errors_and_empty():
    with pytest.raises(KeyError, match='gt_sem_seg'):
        GReferMetric().process({}, [dict(pred_sem_seg=dict(data=_mask()),
                                         sent_id=3)])
    with pytest.raises(ValueError, match='sent_id=3'):
        GReferMetric().process({}, [_s(_mask(), torch.zeros(1, 2, 2), 3)])
    with pytest.raises(ValueError, match='thresholds'):
        GReferMetric(thresholds=(1.5, ))
    assert GReferMetric().compute_metrics([]) == {
        'gIoU': 0.0, 'cIoU': 0.0, 'count': 0, 'no_target_count': 0}


# --------------------------------------------------------------------------
# visualisation and routing statistics of multi- and no-target samples


def test_visualisation_and_routing_stats_of_empty_masks(tmp_path):
    from sera_mm.engine.hooks.refer_visualization_hook import \
        ReferVisualizationHook
    from sera_mm.visualization.refer_visualizer import compose_refer_panel
    from sera_mm.visualization.router_stats import aggregate_routing
    image = np.full((20, 30, 3), 100, np.uint8)
    empty = np.zeros((20, 30), np.uint8)
    pic = compose_refer_panel(image, 'the horse', gt_mask=empty,
                              pred_mask=empty, no_target=True,
                              no_target_score=0.97)
    assert pic.ndim == 3 and pic.shape[2] == 3
    routing = {'neck.routers.0': dict(experts=['a', 'b'],
                                      weights=[0.3, 0.7])}
    hook = ReferVisualizationHook(num_samples=2, out_dir=str(tmp_path))

    class Runner:
        work_dir = str(tmp_path)
        epoch = iter = 0
        visualizer = None

    hook.before_test_epoch(Runner())
    outputs = []
    for i, (gt, nt) in enumerate([(empty, True), (empty + 1, False)]):
        s = SegDataSample(metainfo=dict(
            text='all the dogs', sent_id=i, img_path='missing.png',
            ori_shape=(20, 30), no_target=nt, no_target_score=0.2,
            routing=routing, expr_type='no_target' if nt else 'multi'))
        s.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
        s.pred_sem_seg = PixelData(data=torch.zeros(1, 20, 30))
        outputs.append(s)
    hook.after_test_iter(Runner(), 0, None, outputs)
    assert len(hook.written) == 2 and all(osp.isfile(p)
                                          for p in hook.written)
    stats = aggregate_routing([dict(s.metainfo) for s in outputs])
    assert stats['types'] == ['multi', 'no_target', 'all']
    assert stats['counts'] == {'multi': 1, 'no_target': 1, 'all': 2}


# --------------------------------------------------------------------------
# configs


def test_gref_configs_load_and_build():
    vitb = Config.fromfile(GREF_VITB)
    assert vitb.train_dataloader.dataset.type == 'GReferDataset'
    assert vitb.train_dataloader.dataset.data_root == 'data/grefcoco'
    assert vitb.test_evaluator.type == 'GReferMetric'
    assert vitb.default_scope == 'sera_mm'
    model = MODELS.build(random_init_cfg(vitb.model, force=True))
    assert model.decode_head.no_target_head.in_channels == 256
    assert model.decode_head.no_target_head.text_channels == 512
    assert type(model.decode_head.loss_decode[1]).__name__ == \
        'SmoothDiceLoss'
    del model
    main = Config.fromfile(GREF_MAIN)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = main[key].dataset
        assert ds.type == 'SyntheticGReferDataset'
        assert ds.data_root == 'data/synthetic_gref'
        assert ds.generate.num_images == 2000
    assert main.val_evaluator.type == main.test_evaluator.type == \
        'GReferMetric'
    base = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets',
                                    'synthetic_gref.py'))
    assert base.train_dataloader.dataset.generate == \
        main.train_dataloader.dataset.generate


def test_synthetic_gref_config_trains_one_step():
    cfg = Config.fromfile(GREF_MAIN)
    torch.manual_seed(0)
    model = MODELS.build(random_init_cfg(cfg.model)).train()
    size = 160
    masks = _two_masks(size)
    samples = _samples(masks, no_target=[False, True], size=size)
    for s, n in zip(samples, (2, 0)):
        s.set_metainfo(dict(target_count=n,
                            expr_type='multi' if n else 'no_target'))
    data = model.data_preprocessor(dict(
        inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
                for _ in range(2)], data_samples=samples), True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    before = copy.deepcopy(model.decode_head.no_target_head.state_dict())
    losses = model(**data, mode='loss')
    assert {'loss_ce', 'loss_dice', 'loss_no_target', 'loss_balance'} <= \
        set(losses)
    total = sum(v for k, v in losses.items() if k.startswith('loss_'))
    assert torch.isfinite(total)
    total.backward()
    opt.step()
    after = model.decode_head.no_target_head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_final_metrics_table_uses_the_generalised_columns():
    from sera_mm.engine.final_evaluation import metrics_table
    table = metrics_table({'val': {'gIoU': 50.0, 'cIoU': 40.0, 'N-acc': 70.0,
                                   'T-acc': 90.0, 'Prec@0.7': 30.0,
                                   'count': 10, 'multi/gIoU': 20.0,
                                   'multi/count': 4}})
    lines = table.splitlines()
    assert lines[0].startswith('| split | type | count | gIoU | cIoU | '
                               'N-acc | T-acc |')
    assert lines[2] == ('| val | all | 10 | 50.00 | 40.00 | 70.00 | 90.00 '
                        '| 30.00 |  |  |')
    assert lines[3].startswith('| val | multi | 4 | 20.00 |')
