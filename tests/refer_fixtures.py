"""Small fixtures in the public REFER layout (and CRIS's prepared layout)
with known overlaps between datasets, shared by the dataset tests.

``make_coco_mixture(root)`` writes, under ``root``::

    data/coco/train2014/COCO_train2014_<id>.png   images 1..10 (16 x 16)
    data/refcoco/refs(unc).p  + instances.json
    data/refcoco+/refs(unc).p + instances.json
    data/refcocog/refs(umd).p + instances.json

the layout ``configs/_base_/datasets/refcoco_mixed.py`` reads from the
working directory. Images per split (see ``REFS``):

============  =========  =======  =======  =======
dataset       train      val      testA    testB / test
============  =========  =======  =======  =======
RefCOCO       1, 2, 3    4        5        6
RefCOCO+      1, 5, 7    2        8        3
RefCOCOg umd  4, 6, 8, 9 7        -        10
============  =========  =======  =======  =======

so image 4 is in RefCOCO val and RefCOCOg train, and RefCOCOg's training
expression "The man, left" describes annotation 40 as RefCOCO val's "The
man, LEFT!" does (identical once normalised).
"""
import json
import os
import os.path as osp
import pickle
from typing import Dict, List

import cv2
import numpy as np

SIZE = 16


def coco_name(image_id: int, ext: str = 'png') -> str:
    return f'COCO_train2014_{image_id:012d}.{ext}'


def _ref(ref_id, image_id, ann_id, split, *sentences):
    return dict(ref_id=ref_id, image_id=image_id, ann_id=ann_id, split=split,
                sentences=list(sentences))


#: (split_by, refs) per dataset folder; refs as
#: (ref_id, image_id, ann_id, split, sentences...)
REFS: Dict[str, tuple] = {
    'refcoco': ('unc', [
        _ref(0, 1, 10, 'train', 'man left', 'left man'),
        _ref(1, 2, 20, 'train', 'red car'),
        _ref(2, 3, 30, 'train', 'dog', 'small dog', 'brown dog'),
        _ref(3, 4, 40, 'val', 'The man, LEFT!'),
        _ref(4, 5, 50, 'testA', 'woman'),
        _ref(5, 6, 60, 'testB', 'cat'),
    ]),
    'refcoco+': ('unc', [
        _ref(0, 1, 11, 'train', 'blue shirt'),
        _ref(1, 5, 50, 'train', 'woman in red', 'red woman'),
        _ref(2, 7, 70, 'train', 'tree'),
        _ref(3, 2, 20, 'val', 'car'),
        _ref(4, 8, 80, 'testA', 'boy'),
        _ref(5, 3, 30, 'testB', 'dog'),
    ]),
    'refcocog': ('umd', [
        _ref(0, 4, 40, 'train', 'the man on the left', 'The man, left'),
        _ref(1, 4, 41, 'train', 'the man left'),
        _ref(2, 6, 60, 'train', 'a cat sleeping'),
        _ref(3, 8, 80, 'train', 'the boy', 'boy'),
        _ref(4, 9, 90, 'train', 'bird', 'a bird'),
        _ref(5, 7, 70, 'val', 'tall tree'),
        _ref(6, 10, 100, 'test', 'house'),
    ]),
}


def ann_box(ann_id: int) -> List[float]:
    """The square of annotation ``ann_id``: [x, y, w, h]."""
    x0 = float(ann_id % 4) * 3
    return [x0, x0 + 1, 5.0, 4.0]


def ann_polygon(ann_id: int) -> List[List[float]]:
    x, y, w, h = ann_box(ann_id)
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def write_images(folder: str, ids, size: int = SIZE) -> None:
    os.makedirs(folder, exist_ok=True)
    for i in ids:
        img = np.full((size, size, 3), 20 * (i % 10), np.uint8)
        assert cv2.imwrite(osp.join(folder, coco_name(i)), img)


def write_refer(root: str, split_by: str, refs: List[dict],
                refs_format: str = 'p') -> None:
    """refs(<split_by>).p (or .json) and instances.json for ``refs``
    (every image 1..10 listed; one annotation per distinct ann_id)."""
    os.makedirs(root, exist_ok=True)
    out_refs, anns = [], {}
    sent_id = 0
    for ref in refs:
        sents = []
        for text in ref['sentences']:
            sents.append(dict(sent_id=sent_id, sent=text, raw=text,
                              tokens=text.split()))
            sent_id += 1
        out_refs.append(dict(
            ref_id=ref['ref_id'], ann_id=ref['ann_id'],
            image_id=ref['image_id'], split=ref['split'], category_id=1,
            file_name=coco_name(ref['image_id'])[:-4] + f'_{ref["ann_id"]}'
            '.png', sent_ids=[s['sent_id'] for s in sents],
            sentences=sents))
        anns[ref['ann_id']] = dict(
            id=ref['ann_id'], image_id=ref['image_id'], category_id=1,
            segmentation=ann_polygon(ref['ann_id']),
            bbox=ann_box(ref['ann_id']), area=20.0, iscrowd=0)
    instances = dict(
        images=[dict(id=i, file_name=coco_name(i), height=SIZE, width=SIZE)
                for i in range(1, 11)],
        annotations=list(anns.values()),
        categories=[dict(id=1, name='person', supercategory='person')])
    if refs_format == 'json':
        with open(osp.join(root, f'refs({split_by}).json'), 'w') as f:
            json.dump(out_refs, f)
    else:
        with open(osp.join(root, f'refs({split_by}).p'), 'wb') as f:
            pickle.dump(out_refs, f, protocol=2)
    with open(osp.join(root, 'instances.json'), 'w') as f:
        json.dump(instances, f)


def make_coco_mixture(root: str) -> str:
    """The three datasets of :data:`REFS` under ``<root>/data``; returns
    ``<root>/data``."""
    data = osp.join(root, 'data')
    write_images(osp.join(data, 'coco', 'train2014'), range(1, 11))
    for folder, (split_by, refs) in REFS.items():
        write_refer(osp.join(data, folder), split_by, refs)
    return data


def write_cris(root: str, dataset: str, split: str, refs: List[dict],
               masks: bool = True) -> str:
    """CRIS's prepared layout under ``root`` (``anns/<dataset>/<split>.json``,
    ``masks/<dataset>/<segment_id>.png``, images in
    ``images/train2014``) for refs given as in :data:`REFS`; the CRIS
    ``segment_id`` is the ref id and ``bbox`` the integer [x1, y1, x2, y2]
    CRIS writes. Returns the split file's path."""
    ann_dir = osp.join(root, 'anns', dataset)
    mask_dir = osp.join(root, 'masks', dataset)
    os.makedirs(ann_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    write_images(osp.join(root, 'images', 'train2014'),
                 {r['image_id'] for r in refs})
    out = []
    sent_id = 0
    for ref in refs:
        x, y, w, h = ann_box(ref['ann_id'])
        sents = []
        for i, text in enumerate(ref['sentences']):
            sents.append(dict(idx=i, sent_id=sent_id, sent=text))
            sent_id += 1
        out.append(dict(
            bbox=[int(x), int(y), int(x) + int(w), int(y) + int(h)],
            cat=0, segment_id=ref['ref_id'],
            img_name=coco_name(ref['image_id']), sentences=sents,
            sentences_num=len(sents)))
        if masks:
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[int(y):int(y + h), int(x):int(x + w)] = 255
            assert cv2.imwrite(osp.join(mask_dir, f'{ref["ref_id"]}.png'),
                               mask)
    path = osp.join(ann_dir, f'{split}.json')
    with open(path, 'w') as f:
        json.dump(out, f)
    return path
