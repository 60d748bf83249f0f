"""The public REFER layout (RefCOCO, RefCOCO+, RefCOCOg) as an mmengine
dataset."""
import json
import os.path as osp
import pickle
import random
import struct
from typing import Any, Dict, Iterable, List, Optional, Sequence

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmengine.registry import DefaultScope, init_default_scope

from sera_mm.registry import DATASETS
from sera_mm.utils.safe_pickle import UnsafePickleError, load_plain_pickle

#: Splits of each public partition (split_by).
SPLITS: Dict[str, Sequence[str]] = {
    'unc': ('train', 'val', 'testA', 'testB'),
    'umd': ('train', 'val', 'test'),
    'google': ('train', 'val'),
    'synthetic': ('train', 'val', 'testA', 'testB'),
    # your own data (tools/dataset_converters/make_refer.py)
    'custom': ('train', 'val', 'test', 'testA', 'testB'),
}
#: What ``exclude_by`` may name: the COCO image id, or the image file's
#: base name.
EXCLUDE_BY = ('image_id', 'file_name')
TRAIN_MODES = ('ref', 'sentence')

LAYOUT_EXAMPLE = ('data/refcoco/refs(unc).p, data/refcoco/instances.json, '
                  'images under data/coco/train2014 (data_root='
                  "'data/refcoco', data_prefix=dict(img_path="
                  "'../coco/train2014'))")


def len_bytes(path: str) -> str:
    """``'<n> bytes'``: the size of ``path``, for error messages."""
    try:
        return f'{osp.getsize(path)} bytes'
    except OSError:
        return 'size unknown'


def read_json(path: str, expected: str) -> Any:
    """Load the UTF-8 JSON file ``path``.

    Raises:
        ValueError: the file is not UTF-8 or not valid JSON (truncated,
            corrupt); the message names ``path`` and what was ``expected``.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except UnicodeDecodeError as err:
        raise ValueError(
            f'{path}: not UTF-8 text ({err}); expected {expected}, '
            'UTF-8 encoded as JSON requires') from err
    except json.JSONDecodeError as err:
        raise ValueError(
            f'{path}: not valid JSON ({err}; {len_bytes(path)}, truncated '
            f'or corrupt?); expected {expected}') from err


def check_text(text: str, where: str) -> None:
    """Raise if ``text`` cannot be encoded as UTF-8: a str holding lone
    surrogates, e.g. undecodable bytes from a command line or a file read
    with ``errors='surrogateescape'``, which tokenizers reject with an
    unrelated error.

    Raises:
        ValueError: naming ``where`` and the offending characters.
    """
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as err:
        raise ValueError(
            f'{where}: the expression {text!r} is not valid Unicode text '
            f'(lone surrogate {text[err.start:err.end]!r} at position '
            f'{err.start}: undecodable bytes?); expected UTF-8 text') \
            from None


def default_refs_file(data_root: str, split_by: str) -> str:
    """The refs file of ``split_by`` under ``data_root``: the pickle
    ``refs(<split_by>).p`` (as the REFER toolkit releases it) when it
    exists, else ``refs(<split_by>).json`` (the same list as JSON, as
    ``tools/dataset_converters/make_refer.py`` writes it) when that exists,
    else the pickle's name (so a missing file is reported under it)."""
    pickle_name = f'refs({split_by}).p'
    json_name = f'refs({split_by}).json'
    if not osp.isfile(osp.join(data_root, pickle_name)) and osp.isfile(
            osp.join(data_root, json_name)):
        return json_name
    return pickle_name


def read_refs_file(path: str) -> List[dict]:
    """Read a refs file: JSON when ``path`` ends in ``.json``, else a
    pickle read with the plain-data unpickler
    (:func:`sera_mm.utils.safe_pickle.load_plain_pickle`; python-2 byte
    strings are decoded as UTF-8, else latin-1).

    Returns:
        The list of refs.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not valid JSON / not a readable pickle (truncated,
            corrupt), or not a list (the message names ``path``).
        sera_mm.utils.safe_pickle.UnsafePickleError: a pickle naming a
            function or class to call.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'refs file not found: {path}')
    if path.lower().endswith('.json'):
        refs = read_json(path, 'a JSON list of refs (ref_id, ann_id, '
                         'image_id, split, sentences)')
        if not isinstance(refs, list):
            raise ValueError(f'{path}: expected a JSON list of refs, got '
                             f'{type(refs).__name__}')
        return refs
    # plain data only: a refs file naming any other global (e.g.
    # os.system) raises UnsafePickleError instead of running it
    try:
        try:
            refs = load_plain_pickle(path)
        except UnicodeDecodeError:
            # a python-2 pickle with non-ASCII str: read the bytes and
            # decode them as UTF-8 ourselves
            refs = _decode_py2(load_plain_pickle(path, encoding='bytes'))
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            IndexError, KeyError, AttributeError, ImportError,
            struct.error) as err:
        # a truncated, empty or corrupt file, or not a pickle at all
        raise ValueError(
            f'{path}: cannot read the refs file ({len_bytes(path)}: '
            f'{type(err).__name__}: {err}); expected a pickled list of '
            'refs as the REFER toolkit writes them (is it truncated, '
            'corrupt or not a pickle?)') from err
    if not isinstance(refs, list):
        raise ValueError(f'{path}: expected a pickled list of refs, got '
                         f'{type(refs).__name__}')
    return refs


def _decode_py2(obj: Any) -> Any:
    """bytes -> str (UTF-8, else latin-1) through dicts, lists and tuples:
    python-2 ``str`` objects unpickled with ``encoding='bytes'``."""
    if isinstance(obj, bytes):
        try:
            return obj.decode('utf-8')
        except UnicodeDecodeError:
            return obj.decode('latin-1')
    if isinstance(obj, dict):
        return {_decode_py2(k): _decode_py2(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_decode_py2(v) for v in obj)
    return obj


@DATASETS.register_module()
class ReferDataset(BaseDataset):
    """Referring expressions in the public REFER format.

    ``refs(<split_by>).p`` is a pickled list of refs (``ref_id, ann_id,
    image_id, split, sentences=[{sent_id, sent, raw, tokens}], category_id,
    file_name``); ``refs(<split_by>).json``, the same list as JSON (what
    ``tools/dataset_converters/make_refer.py`` writes), is read when there
    is no pickle (the pickle is preferred when both exist; ``refs_file``
    names one explicitly). ``instances.json`` holds the COCO images,
    annotations (masks as polygons or RLE) and categories. RefCOCO and
    RefCOCO+ use split_by ``unc`` (train/val/testA/testB), RefCOCOg ``umd``
    (train/val/test) or ``google`` (train/val); the built-in synthetic
    benchmark ``synthetic`` (train/val/testA/testB); your own data
    ``custom`` (train/val/test, and testA/testB if you use them).

    Items: in training (``test_mode=False``) with ``train_mode='ref'`` one
    item per ref, whose expression is drawn at random each time the item is
    fetched (so every epoch sees other sentences); with ``'sentence'`` one
    item per sentence. Evaluation (``test_mode=True``) always yields one item
    per sentence. Each item carries ``text``, ``ref_id``, ``sent_id``,
    ``ann_id``, ``image_id``, ``category_id``, ``expr_type`` (from the
    sentence or ref key ``expr_type``; None when absent), the annotation's
    ``segmentation``, its COCO ``bbox`` ([x, y, w, h], when the annotation
    has one) and the image's ``height``/``width``.

    Training without leakage: ``exclude_images`` drops every ref whose
    image is in that collection (after loading, before serialisation);
    ``exclusion_stats`` then holds how many images, refs and expressions
    were removed (:class:`~sera_mm.datasets.MixedReferDataset` fills it
    from the evaluation splits).

    Args:
        data_root: folder with the refs and instances files.
        split_by: 'unc', 'umd', 'google', 'synthetic' or 'custom'.
        split: a split of ``split_by`` (see ``SPLITS``).
        ann_file: the COCO instances file, relative to ``data_root``.
        refs_file: the refs file, relative to ``data_root``: a pickle, or
            JSON when the name ends in ``.json``; default
            ``refs(<split_by>).p``, or ``refs(<split_by>).json`` when only
            that exists (:func:`default_refs_file`).
        data_prefix: ``dict(img_path=...)``, the image folder relative to
            ``data_root``.
        train_mode: 'ref' or 'sentence' (training only).
        skip_empty: drop sentences with an empty expression, and refs left
            without any, logging their ids, instead of raising.
        check_images: check at load time that every image file exists
            (one ``isfile`` per image).
        dataset_name: ``metainfo['dataset_name']``; default
            ``<basename of data_root>_<split_by>`` (e.g. 'refcoco_unc').
        exclude_images: image keys whose refs are left out (see
            ``exclude_by``); None or empty keeps everything.
        exclude_by: what ``exclude_images`` holds: ``'image_id'`` (the COCO
            image id, the default) or ``'file_name'`` (the image file's base
            name).
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments
            (``pipeline``, ``test_mode``, ``lazy_init``, ...).

    Raises:
        ValueError: unknown ``split_by``, ``split`` or ``train_mode``; an
            empty expression (unless ``skip_empty``); an expression that is
            not valid Unicode (lone surrogates); a split with no refs; a
            refs file that is not a readable pickle (truncated, corrupt) or
            an instances file that is not UTF-8 JSON (each named).
        FileNotFoundError: a missing refs, instances or image file.
        sera_mm.utils.safe_pickle.UnsafePickleError: a refs file that is not
            a plain-data pickle (it names a function or class to call).
        KeyError: a ref whose annotation or image is not in instances.json.
    """

    METAINFO = dict(classes=('background', 'object'),
                    palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self,
                 data_root: str,
                 split_by: str = 'unc',
                 split: str = 'train',
                 ann_file: str = 'instances.json',
                 refs_file: Optional[str] = None,
                 data_prefix: Optional[dict] = None,
                 train_mode: str = 'ref',
                 skip_empty: bool = False,
                 check_images: bool = True,
                 dataset_name: Optional[str] = None,
                 exclude_images: Optional[Iterable] = None,
                 exclude_by: str = 'image_id',
                 **kwargs) -> None:
        if split_by not in SPLITS:
            raise ValueError(f'split_by: unknown {split_by!r}; valid: '
                             f'{sorted(SPLITS)}')
        if split not in SPLITS[split_by]:
            raise ValueError(f'split: unknown {split!r} for split_by '
                             f'{split_by!r}; valid: {list(SPLITS[split_by])}')
        if train_mode not in TRAIN_MODES:
            raise ValueError(f'train_mode must be one of {TRAIN_MODES}, got '
                             f'{train_mode!r}')
        if exclude_by not in EXCLUDE_BY:
            raise ValueError(f'exclude_by must be one of {EXCLUDE_BY}, got '
                             f'{exclude_by!r}')
        self.split_by = split_by
        self.split = split
        self.refs_file = refs_file or default_refs_file(data_root, split_by)
        self.exclude_images = frozenset(exclude_images or ())
        self.exclude_by = exclude_by
        #: filled by ``filter_data`` when ``exclude_images`` is given
        self.exclusion_stats: Optional[dict] = None
        self.train_mode = train_mode
        self.skip_empty = skip_empty
        self.check_images = check_images
        if dataset_name is None:
            base = osp.basename(osp.normpath(data_root)) or 'refer'
            dataset_name = f'{base}_{split_by}'
        if DefaultScope.get_current_instance() is None:
            init_default_scope('sera_mm')  # pipeline types live in sera_mm
        super().__init__(
            data_root=data_root,
            ann_file=ann_file,
            data_prefix=data_prefix or dict(img_path=''),
            **kwargs)
        # set here, not through ``metainfo``: BaseDataset would try to read
        # a string value as a file name
        self._metainfo.setdefault('dataset_name', dataset_name)

    # -- loading -----------------------------------------------------------
    def _layout(self) -> str:
        """The files this dataset expects, for error messages."""
        alt = ''
        if self.refs_file == f'refs({self.split_by}).p':
            alt = f' (or refs({self.split_by}).json)'
        return (f'expected the REFER layout: '
                f'{osp.join(self.data_root, self.refs_file)}{alt}, '
                f'{self.ann_file} and the images under '
                f'{self.data_prefix.get("img_path", "")} (e.g. '
                f'{LAYOUT_EXAMPLE})')

    def _require(self, path: str, what: str) -> str:
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}; '
                                    f'{self._layout()}')
        return path

    def _read_refs(self) -> List[dict]:
        path = self._require(osp.join(self.data_root, self.refs_file),
                             'refs file')
        return read_refs_file(path)

    def _read_instances(self) -> Dict[str, Any]:
        path = self._require(self.ann_file, 'instances file')
        coco = read_json(path, 'a COCO instances file (a JSON object with '
                         '"images" and "annotations")')
        for key in ('images', 'annotations'):
            if not isinstance(coco, dict) or key not in coco:
                raise ValueError(f'{path}: expected COCO keys "images" and '
                                 f'"annotations"; missing {key!r}')
        return coco

    def _sentences(self, ref: dict) -> List[dict]:
        out, empty = [], []
        if not ref.get('sentences'):
            msg = (f'ref_id {ref.get("ref_id")}: no sentences in '
                   f'{self.refs_file}')
            if not self.skip_empty:
                raise ValueError(msg + ' (set skip_empty=True to drop it)')
            print_log(msg + ': skipped', logger='current')
            return out
        for sent in ref['sentences']:
            text = sent.get('sent', sent.get('raw', ''))
            if not isinstance(text, str) or not text.strip():
                empty.append(sent.get('sent_id'))
                continue
            check_text(text, f'ref_id {ref.get("ref_id")}, sent_id '
                       f'{sent.get("sent_id")} in {self.refs_file}')
            out.append(dict(
                text=text.strip(),
                sent_id=sent.get('sent_id'),
                expr_type=sent.get('expr_type', ref.get('expr_type'))))
        if empty:
            msg = (f'ref_id {ref.get("ref_id")}: empty expression(s) with '
                   f'sent_id {empty} in {self.refs_file}')
            if not self.skip_empty:
                raise ValueError(msg + ' (set skip_empty=True to drop them)')
            print_log(msg + ': skipped', logger='current')
        return out

    def _ref_target(self, ref: dict, anns: Dict[Any, dict]) -> dict:
        """The fields of a ref's item that describe what it refers to:
        ``ann_id``, ``category_id`` and ``segmentation`` (the one
        annotation's polygons or RLE). Subclasses with other targets
        (several annotations, none) override it.

        Raises:
            KeyError: the annotation is not in instances.json.
        """
        ann = anns.get(ref.get('ann_id'))
        if ann is None:
            raise KeyError(f'ref_id {ref.get("ref_id")}: annotation id '
                           f'{ref.get("ann_id")} is not in {self.ann_file}')
        target = dict(ann_id=ann['id'],
                      category_id=ref.get('category_id',
                                          ann.get('category_id')),
                      segmentation=ann['segmentation'])
        bbox = ann.get('bbox')
        if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
            target['bbox'] = [float(v) for v in bbox]
        return target

    def load_data_list(self) -> List[dict]:
        refs = self._read_refs()
        coco = self._read_instances()
        images = {img['id']: img for img in coco['images']}
        anns = {ann['id']: ann for ann in coco['annotations']}
        img_dir = self.data_prefix.get('img_path', '')
        data_list: List[dict] = []
        checked = set()
        for ref in refs:
            if ref.get('split') != self.split:
                continue
            ref_id = ref.get('ref_id')
            target = self._ref_target(ref, anns)
            img = images.get(ref.get('image_id'))
            if img is None:
                raise KeyError(f'ref_id {ref_id}: image id '
                               f'{ref.get("image_id")} is not in '
                               f'{self.ann_file}')
            img_path = osp.join(img_dir, img['file_name'])
            if self.check_images and img_path not in checked:
                self._require(img_path, f'image of ref_id {ref_id}')
                checked.add(img_path)
            sentences = self._sentences(ref)
            if not sentences:
                continue
            base = dict(
                img_path=img_path,
                ref_id=ref_id,
                image_id=img['id'],
                **target,
                height=int(img['height']),
                width=int(img['width']),
                seg_fields=[],
                reduce_zero_label=False)
            data_list.extend(self._items(base, sentences))
        if not data_list:
            raise ValueError(f'split {self.split!r} of {self.refs_file} in '
                             f'{self.data_root} has no refs')
        return data_list

    def _items(self, base: dict, sentences: List[dict]) -> List[dict]:
        """The items of one ref: one holding all ``sentences`` (training
        with ``train_mode='ref'``), else one per sentence."""
        if not self.test_mode and self.train_mode == 'ref':
            return [dict(base, sentences=sentences)]
        return [dict(base, **sent) for sent in sentences]

    def image_key(self, item: dict) -> Any:
        """The key ``exclude_images`` is matched against: the item's
        ``image_id``, or with ``exclude_by='file_name'`` the base name of
        its image file."""
        if self.exclude_by == 'file_name':
            return osp.basename(item['img_path'])
        return item['image_id']

    def filter_data(self) -> List[dict]:
        """Drop the items whose image is in ``exclude_images`` and record
        in ``exclusion_stats`` how many images, refs and expressions were
        removed of how many: ``dict(images=(removed, total), refs=(removed,
        total), expressions=(removed, total), removed_images=frozenset)``.

        Raises:
            ValueError: nothing is left.
        """
        data_list = super().filter_data()
        if not self.exclude_images:
            return data_list
        images, refs, exprs = set(), set(), 0
        gone_images, gone_refs, gone_exprs = set(), set(), 0
        kept = []
        for item in data_list:
            key = self.image_key(item)
            count = len(item['sentences']) if 'sentences' in item else 1
            images.add(key)
            refs.add(item['ref_id'])
            exprs += count
            if key in self.exclude_images:
                gone_images.add(key)
                gone_refs.add(item['ref_id'])
                gone_exprs += count
            else:
                kept.append(item)
        self.exclusion_stats = dict(
            images=(len(gone_images), len(images)),
            refs=(len(gone_refs), len(refs)),
            expressions=(gone_exprs, exprs),
            removed_images=frozenset(gone_images))
        if not kept:
            raise ValueError(
                f'split {self.split!r} of {self.refs_file} in '
                f'{self.data_root}: every one of its {len(images)} images is '
                f'excluded (exclude_images, by {self.exclude_by}); nothing '
                'is left to train on')
        return kept

    # -- fetching ----------------------------------------------------------
    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        sentences = info.pop('sentences', None)
        if sentences:  # ref mode: a random expression each fetch
            info.update(random.choice(sentences))
        return info
