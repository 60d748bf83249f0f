"""Synthetic referring benchmark: layout, masks, unambiguous expressions,
compositional testB split, determinism, atomic writing and the CLI."""
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import os.path as osp
import pickle
import re
from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sera_mm.datasets.synthetic import (EXPR_TYPES, HELDOUT_PAIRS,
                                        SHAPE_NAMES, expression_candidates,
                                        generate_synthetic_refer,
                                        is_synthetic_refer_complete,
                                        resolve, resolve_expression,
                                        sample_scene)
from sera_mm.datasets.synthetic import generator as gen_module
from sera_mm.datasets.synthetic.expressions import (POSITION_MARGIN,
                                                    make_filter)
from sera_mm.datasets.synthetic.scenes import (COLOURS, Scene, SceneObject,
                                               referable)
from sera_mm.datasets.synthetic.shapes import rasterize, shape_geometry

NUM = 40
SIZE = 128
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('syn') / 'synthetic')
    summary = generate_synthetic_refer(root, num_images=NUM, seed=0,
                                       image_size=SIZE, progress=False)
    with open(osp.join(root, 'refs(synthetic).p'), 'rb') as f:
        refs = pickle.load(f)
    with open(osp.join(root, 'instances.json')) as f:
        inst = json.load(f)
    return root, summary, refs, inst


def _pair_of_ann(inst):
    cats = {c['id']: c['name'] for c in inst['categories']}
    return {a['id']: (a['colour'], cats[a['category_id']])
            for a in inst['annotations']}


def _decode(seg, h, w):
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    else:
        rle = dict(size=seg['size'], counts=seg['counts'].encode())
    return mask_utils.decode(rle).astype(bool)


def _digest(root):
    out = {}
    for name in ('refs(synthetic).p', 'instances.json', '.complete'):
        with open(osp.join(root, name), 'rb') as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    for name in sorted(os.listdir(osp.join(root, 'images'))):
        with open(osp.join(root, 'images', name), 'rb') as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


# --------------------------------------------------------------------------
# layout


def test_layout_and_loading(dataset):
    from pycocotools.coco import COCO
    root, summary, refs, inst = dataset
    assert is_synthetic_refer_complete(root)
    assert summary['images'] == dict(train=32, val=4, testA=4, testB=4)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(osp.join(root, 'instances.json'))
    assert len(coco.imgs) == summary['total_images'] == 44
    assert [c['name'] for c in inst['categories']] == list(SHAPE_NAMES)
    files = set(os.listdir(osp.join(root, 'images')))
    assert files == {im['file_name'] for im in inst['images']}
    assert len(refs) == sum(summary['refs'].values()) > 0
    ref_ids, sent_ids = set(), set()
    for ref in refs:
        for key in ('ref_id', 'ann_id', 'image_id', 'split', 'sentences',
                    'sent_ids', 'category_id', 'file_name'):
            assert key in ref, key
        assert ref['split'] in ('train', 'val', 'testA', 'testB')
        ann = coco.anns[ref['ann_id']]
        assert ann['image_id'] == ref['image_id']
        assert ann['category_id'] == ref['category_id']
        assert ann['iscrowd'] == 0
        assert ref['file_name'] == coco.imgs[ref['image_id']]['file_name']
        assert 2 <= len(ref['sentences']) <= 3
        assert ref['sent_ids'] == [s['sent_id'] for s in ref['sentences']]
        types = {s['expr_type'] for s in ref['sentences']}
        assert len(types) == 1 and types <= set(EXPR_TYPES)
        for s in ref['sentences']:
            assert s['tokens'] == re.findall(r'[a-z0-9]+', s['sent'])
            assert s['raw'] and s['sent']
        assert len({s['sent'] for s in ref['sentences']}) == len(
            ref['sentences'])
        assert ref['ref_id'] not in ref_ids
        ref_ids.add(ref['ref_id'])
        assert not sent_ids & set(ref['sent_ids'])
        sent_ids |= set(ref['sent_ids'])


def test_masks_are_visible_regions(dataset):
    root, _, refs, inst = dataset
    import cv2
    imgs = {im['id']: im for im in inst['images']}
    kinds = Counter()
    for ann in inst['annotations']:
        im = imgs[ann['image_id']]
        h, w = im['height'], im['width']
        mask = _decode(ann['segmentation'], h, w)
        kinds['poly' if isinstance(ann['segmentation'], list) else 'rle'] += 1
        assert mask.sum() == ann['area'] > 0
        x, y, bw, bh = ann['bbox']
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (
            x, y, x + bw, y + bh)
        # every pixel of the mask shows the shape's own colour
        bgr = cv2.imread(osp.join(root, 'images', im['file_name']))
        rgb = bgr[..., ::-1].astype(int)[mask]
        ref_colour = np.array(COLOURS[ann['colour']])
        assert np.abs(rgb - ref_colour).max() <= 10
    assert kinds['poly'] > 0 and kinds['rle'] > 0  # the loader sees both


def test_masks_equal_rerendered_scene(dataset):
    """Re-render image i from its seed and compare visible masks exactly."""
    root, _, _, inst = dataset
    import cv2
    anns = {}
    for a in inst['annotations']:
        anns.setdefault(a['image_id'], []).append(a)
    checked = 0
    for im in inst['images'][:20]:
        i = im['id'] - 1
        rng = np.random.default_rng([0, i])
        scene = sample_scene(rng, SIZE, compositional=False)
        png = cv2.imread(osp.join(root, 'images', im['file_name']))[..., ::-1]
        if not np.array_equal(png, scene.image):
            continue  # the first scene had no ref and was resampled
        visible = [o for o in scene.objects if o.visible_area > 0]
        assert len(visible) == len(anns[im['id']])
        occluded = 0
        for obj, ann in zip(visible, anns[im['id']]):
            mask = _decode(ann['segmentation'], SIZE, SIZE)
            assert np.array_equal(mask, obj.visible_mask)
            assert not (mask & ~obj.full_mask).any()
            occluded += obj.occluded
            assert SHAPE_NAMES[ann['category_id'] - 1] == obj.shape
        checked += 1
    assert checked >= 10


# --------------------------------------------------------------------------
# resolvers


def _obj(index, shape, colour, cx, cy, size='small', radius=8.0,
         thickness=None, image_size=SIZE):
    if shape in ('ring', 'cross') and thickness is None:
        thickness = 'thick'
    geom = shape_geometry(shape, cx, cy, radius, 0.0, thickness,
                          np.random.default_rng(0))
    mask = rasterize(geom, image_size, image_size)
    return SceneObject(index, shape, colour, size, thickness, cx, cy, radius,
                       geom, mask, full_area=int(mask.sum()))


def _scene(objs, image_size=SIZE):
    n = len(objs)
    for i, o in enumerate(objs):
        vis = o.full_mask.copy()
        for later in objs[i + 1:]:
            vis &= ~later.full_mask
        o.visible_mask, o.visible_area = vis, int(vis.sum())
    cover = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            cover[i, j] = (objs[i].full_mask
                           & objs[j].full_mask).sum() / objs[i].full_area
    img = np.zeros((image_size, image_size, 3), np.uint8)
    return Scene(image=img, objects=objs, background='plain', cover=cover)


def test_resolvers_on_handmade_scene():
    m = POSITION_MARGIN * SIZE  # 7.7 px at 128
    scene = _scene([
        _obj(0, 'circle', 'red', 20, 60),
        _obj(1, 'circle', 'red', 60, 60),
        _obj(2, 'circle', 'red', 60 + m / 2, 100),  # ties with 1 in x
        _obj(3, 'square', 'blue', 100, 20, size='large', radius=16),
        _obj(4, 'square', 'green', 100, 50, size='small', radius=8),
    ])
    red_circle = make_filter(colour='red', shape='circle')
    assert resolve(scene, dict(kind='attribute', filter=red_circle)) == {
        0, 1, 2}
    assert resolve(scene, dict(kind='attribute',
                               filter=make_filter(colour='blue'))) == {3}
    rank = dict(kind='rank', filter=red_circle)
    assert resolve(scene, dict(rank, key='left', k=1)) == {0}
    assert resolve(scene, dict(rank, key='right', k=1)) == {1, 2}  # a tie
    assert resolve(scene, dict(rank, key='left', k=2)) == {1, 2}
    assert resolve(scene, dict(rank, key='bottom', k=1)) == {2}
    assert resolve(scene, dict(rank, key='top', k=1)) == {0, 1}
    squares = make_filter(shape='square')
    assert resolve(scene, dict(kind='rank', filter=squares, key='large',
                               k=1)) == {3}
    assert resolve(scene, dict(kind='region', filter=squares,
                               region='top right')) == {3, 4}
    assert resolve(scene, dict(kind='relation', filter=squares, rel='below',
                               anchor=make_filter(colour='blue'))) == {4}
    assert resolve(scene, dict(kind='relation', filter=red_circle,
                               rel='left',
                               anchor=make_filter(colour='green'))) == {
                                   0, 1, 2}
    # an ambiguous anchor makes the relation ambiguous
    assert resolve(scene, dict(kind='relation', filter=squares, rel='above',
                               anchor=make_filter(colour='red'))) == {3, 4}
    assert resolve(scene, dict(kind='relation', filter=squares, rel='above',
                               anchor=make_filter(colour='green'))) == {3}
    with pytest.raises(ValueError, match='kind'):
        resolve(scene, dict(kind='colourful'))


def test_occlusion_resolver():
    scene = _scene([
        _obj(0, 'cross', 'purple', 40, 40, radius=14, thickness='thin'),
        _obj(1, 'cross', 'purple', 90, 90, radius=14, thickness='thick'),
        _obj(2, 'circle', 'green', 52, 40, radius=8),
    ])
    assert scene.objects[0].occluded and not scene.objects[1].occluded
    cross = make_filter(shape='cross')
    q = dict(kind='occlusion', filter=cross, rel='hidden_by',
             anchor=make_filter(colour='green'))
    assert resolve(scene, q) == {0}
    assert resolve(scene, dict(q, rel='hidden', anchor=())) == {0}
    assert resolve(scene, dict(kind='occlusion', filter=make_filter(),
                               rel='covers', anchor=cross)) == {2}
    assert resolve(scene, dict(kind='attribute', filter=make_filter(
        shape='cross', thickness='thin'))) == {0}
    texts = [e.text for e in expression_candidates(scene, scene.objects[0],
                                                   'boundary')]
    assert 'the thin cross' in texts
    assert 'the cross partly hidden by the green circle' in texts


def _check_text_matches_query(expr, scene):
    """Words of the sentence agree with the query it was made from."""
    words = set(expr.text.split())
    q = expr.query
    named = dict(q['filter'])
    anchor = dict(q.get('anchor') or ())
    for key in ('colour', 'shape', 'size', 'thickness'):
        for value in (named.get(key), anchor.get(key)):
            if value is not None:
                assert value in words, (expr.text, q)
    colours = words & set(COLOURS)
    assert colours <= {named.get('colour'), anchor.get('colour')}, expr.text
    target = scene.objects[expr.target]
    for key, value in named.items():
        assert getattr(target, key) == value, (expr.text, q)


def test_every_expression_resolves_to_its_target_only():
    per_type = Counter()
    failures = []
    for i in range(300):
        rng = np.random.default_rng([123, i])
        scene = sample_scene(rng, SIZE, compositional=bool(i % 4 == 0))
        for obj in scene.objects:
            if not referable(scene, obj):
                continue
            for expr_type in EXPR_TYPES:
                for e in expression_candidates(scene, obj, expr_type):
                    per_type[expr_type] += 1
                    if resolve_expression(scene, e) != {obj.index}:
                        failures.append((i, e))
                    _check_text_matches_query(e, scene)
    assert not failures, failures[:5]
    assert all(per_type[t] > 50 for t in EXPR_TYPES), per_type


def test_ambiguous_expression_is_never_generated():
    """Two identical shapes: no attribute expression for either."""
    scene = _scene([_obj(0, 'star', 'yellow', 30, 30),
                    _obj(1, 'star', 'yellow', 90, 90),
                    _obj(2, 'ring', 'black', 30, 90)])
    for idx in (0, 1):
        assert expression_candidates(scene, scene.objects[idx],
                                     'attribute') == []
        spatial = expression_candidates(scene, scene.objects[idx], 'spatial')
        assert spatial and all(
            resolve(scene, e.query) == {idx} for e in spatial)


# --------------------------------------------------------------------------
# splits and types


def test_expression_types_present_and_balanced(dataset):
    _, summary, refs, _ = dataset
    types = Counter(r['sentences'][0]['expr_type'] for r in refs)
    assert set(types) == set(EXPR_TYPES)
    assert min(types.values()) >= 0.1 * len(refs), types
    assert summary['refs_per_type'] == {t: types[t] for t in EXPR_TYPES}


def test_testb_targets_are_heldout_pairs(dataset):
    _, _, refs, inst = dataset
    pair_of = _pair_of_ann(inst)
    heldout = set(HELDOUT_PAIRS)
    split_of_image = {r['image_id']: r['split'] for r in refs}
    testb = [r for r in refs if r['split'] == 'testB']
    assert testb
    assert all(pair_of[r['ann_id']] in heldout for r in testb)
    assert not any(pair_of[r['ann_id']] in heldout for r in refs
                   if r['split'] != 'testB')
    # held-out pairs never appear at all outside testB
    for ann in inst['annotations']:
        if split_of_image.get(ann['image_id']) != 'testB':
            assert pair_of[ann['id']] not in heldout


# --------------------------------------------------------------------------
# determinism, atomicity, overwrite rules, CLI


def test_determinism(dataset, tmp_path):
    root = dataset[0]
    again = str(tmp_path / 'again')
    other = str(tmp_path / 'other')
    generate_synthetic_refer(again, num_images=NUM, seed=0, image_size=SIZE,
                             progress=False)
    generate_synthetic_refer(other, num_images=NUM, seed=1, image_size=SIZE,
                             progress=False)
    assert _digest(root) == _digest(again)
    d0, d1 = _digest(root), _digest(other)
    assert d0['refs(synthetic).p'] != d1['refs(synthetic).p']
    assert d0['instances.json'] != d1['instances.json']
    pngs = [k for k in d0 if k.endswith('.png')]
    assert sum(d0[k] != d1[k] for k in pngs) == len(pngs)


def test_reuse_overwrite_and_foreign_dir(tmp_path):
    root = str(tmp_path / 'ds')
    s1 = generate_synthetic_refer(root, num_images=5, seed=0,
                                  image_size=64, progress=False)
    refs_path = osp.join(root, 'refs(synthetic).p')
    mtime = os.stat(refs_path).st_mtime_ns
    # complete and no overwrite: returned as is (with a warning on other
    # arguments)
    with pytest.warns(UserWarning, match='other arguments'):
        s2 = generate_synthetic_refer(root, num_images=5, seed=3,
                                      image_size=64, progress=False)
    assert s2 == s1 and os.stat(refs_path).st_mtime_ns == mtime
    s3 = generate_synthetic_refer(root, num_images=5, seed=3, image_size=64,
                                  progress=False, overwrite=True)
    assert s3['seed'] == 3 and is_synthetic_refer_complete(root)
    # a non-empty directory that is not ours is refused and left intact
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='mine'):
        generate_synthetic_refer(str(foreign), num_images=5, image_size=64,
                                 progress=False, overwrite=True)
    assert (foreign / 'notes.txt').read_text() == 'keep me'
    assert {p.name for p in tmp_path.iterdir()} == {'ds', 'mine'}


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = {'n': 0}
    real = gen_module.sample_scene

    def failing(*args, **kwargs):
        calls['n'] += 1
        if calls['n'] > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gen_module, 'sample_scene', failing)
    root = tmp_path / 'ds'
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_refer(str(root), num_images=10, image_size=64,
                                 progress=False)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left
    assert not is_synthetic_refer_complete(str(root))


def test_is_complete_needs_marker_and_files(tmp_path):
    root = tmp_path / 'ds'
    generate_synthetic_refer(str(root), num_images=3, image_size=64,
                             progress=False)
    assert is_synthetic_refer_complete(str(root))
    (root / 'instances.json').rename(root / 'moved.json')
    assert not is_synthetic_refer_complete(str(root))
    (root / 'moved.json').rename(root / 'instances.json')
    (root / '.complete').write_text('{broken')
    assert not is_synthetic_refer_complete(str(root))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='split_ratios'):
        generate_synthetic_refer(str(tmp_path / 'a'), num_images=4,
                                 split_ratios=(0.5, 0.1, 0.1),
                                 progress=False)
    with pytest.raises(ValueError, match='num_images'):
        generate_synthetic_refer(str(tmp_path / 'a'), num_images=0,
                                 progress=False)
    assert not (tmp_path / 'a').exists()


def _load_cli():
    path = osp.join(REPO, 'tools', 'dataset_converters',
                    'make_synthetic_refer.py')
    spec = importlib.util.spec_from_file_location('make_synthetic_refer',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    cli = _load_cli()
    out = str(tmp_path / 'synthetic')
    argv = ['--out', out, '--num-images', '6', '--seed', '0',
            '--image-size', '64', '--no-progress']
    assert cli.main(argv) == 0
    assert is_synthetic_refer_complete(out)
    printed = capsys.readouterr().out
    assert '"total_images": 7' in printed  # 6 + round(0.6) testB
    digest = _digest(out)
    assert cli.main(argv) == 1
    assert 'overwrite' in capsys.readouterr().err
    assert _digest(out) == digest
    assert cli.main(argv + ['--overwrite', '--seed', '1']) == 0
    assert _digest(out) != digest


def test_cli_generalised_variant(tmp_path, capsys):
    import json
    from sera_mm.datasets.synthetic import GREFS_FILE
    cli = _load_cli()
    out = tmp_path / 'gref'
    argv = ['--generalised', '--out', str(out), '--num-images', '6',
            '--image-size', '64', '--no-progress', '--no-target-prob', '1.0']
    assert cli.main(argv) == 0
    assert is_synthetic_refer_complete(str(out), GREFS_FILE)
    assert not (out / 'refs(synthetic).p').exists()
    refs = json.loads((out / GREFS_FILE).read_text())
    assert any(r['no_target'] for r in refs)
    assert cli.main(argv) == 1
    assert 'generalised synthetic dataset' in capsys.readouterr().err
    assert cli.parse_args(['--generalised']).out == 'data/synthetic_gref'
    assert cli.parse_args([]).out == 'data/synthetic'


def test_small_request_summary_matches_what_is_written(tmp_path):
    """A small request with its own split ratios and image size: the
    summary's per-split image counts follow the request and add up to
    total_images, every image written has the requested size, and the
    per-split image, ref and sentence counts and the annotation count are
    those of the files written; the marker stores the same summary."""
    import cv2
    root = tmp_path / 'ds'
    summary = generate_synthetic_refer(
        str(root), num_images=8, seed=2, image_size=64,
        split_ratios=(0.5, 0.25, 0.25), testb_fraction=0.25, progress=False)
    assert summary['images'] == dict(train=4, val=2, testA=2, testB=2)
    assert sum(summary['images'].values()) == summary['total_images'] == 10
    with open(root / 'refs(synthetic).p', 'rb') as f:
        refs = pickle.load(f)
    with open(root / 'instances.json') as f:
        inst = json.load(f)
    files = sorted(os.listdir(root / 'images'))
    assert len(files) == len(inst['images']) == summary['total_images']
    for name in files:
        assert cv2.imread(str(root / 'images' / name)).shape == (64, 64, 3)
    assert all((im['height'], im['width']) == (64, 64)
               for im in inst['images'])
    split_of_image = {}
    for ref in refs:
        assert split_of_image.setdefault(ref['image_id'],
                                         ref['split']) == ref['split']
    splits = ('train', 'val', 'testA', 'testB')
    images = Counter(split_of_image.values())
    assert {s: images[s] for s in splits} == summary['images']
    ref_split = Counter(r['split'] for r in refs)
    assert {s: ref_split[s] for s in splits} == summary['refs']
    sent_split = Counter()
    for ref in refs:
        sent_split[ref['split']] += len(ref['sentences'])
    assert {s: sent_split[s] for s in splits} == summary['sentences']
    assert summary['num_annotations'] == len(inst['annotations'])
    with open(root / '.complete') as f:
        assert json.load(f) == summary
