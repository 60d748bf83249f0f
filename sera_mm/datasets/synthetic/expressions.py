"""Referring expressions for synthetic scenes, with explicit resolvers.

An expression is a structured *query* plus its surface text. A resolver
per query kind returns the set of object indices of a scene that *may*
satisfy the query: positions, sizes and overlaps within a margin of the
decision boundary count as satisfying, so a near tie is reported as
ambiguous. An expression is kept only when its resolver returns exactly
the target, and, for relative queries, when the target satisfies the
query by more than the margin.

Query kinds (dicts with a ``kind`` key):

* ``attribute``: ``filter`` (colour/shape/size/thickness) -> matching shapes.
* ``rank``: ``filter``, ``key`` ('left', 'right', 'top', 'bottom',
  'large', 'small'), ``k`` (1-based) -> the k-th matching shape in that
  order.
* ``region``: ``filter``, ``region`` -> matching shapes whose centre lies
  in an image region.
* ``relation``: ``filter``, ``rel`` ('left', 'right', 'above', 'below',
  'nearest'), ``anchor`` (a filter) -> matching shapes in that relation to
  the anchor.
* ``occlusion``: ``filter``, ``rel`` ('hidden_by', 'covers', 'hidden'),
  ``anchor`` (a filter, unused for 'hidden').

Expression types (the ``expr_type`` tag) map onto kinds: attribute ->
attribute; spatial -> rank with k=1 on a position key, region;
relational -> relation; ordinal -> rank with k>=2 or on a size key;
boundary -> attribute with a thickness, occlusion.
"""
import itertools
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .scenes import Scene, SceneObject

EXPR_TYPES = ('attribute', 'spatial', 'relational', 'ordinal', 'boundary')

#: Position margin as a fraction of the image side.
POSITION_MARGIN = 0.06
#: Size margin: areas within this ratio are a tie.
SIZE_RATIO_MARGIN = 1.5
#: Occlusion: below POSSIBLE the overlap is invisible, above DEFINITE it
#: is clearly visible (fractions of the occluded shape's full area).
COVER_POSSIBLE = 0.01
COVER_DEFINITE = 0.06

_FILTER_KEYS = ('size', 'thickness', 'colour', 'shape')
_ORDINALS = {2: 'second', 3: 'third', 4: 'fourth', 5: 'fifth'}


@dataclass(frozen=True)
class Expression:
    """One referring expression of a target shape."""
    expr_type: str
    text: str
    query: dict
    target: int


# --------------------------------------------------------------------------
# filters


def make_filter(colour: Optional[str] = None,
                shape: Optional[str] = None,
                size: Optional[str] = None,
                thickness: Optional[str] = None) -> Tuple[Tuple[str, str],
                                                          ...]:
    """A hashable filter: sorted (key, value) pairs of the set attributes."""
    items = dict(colour=colour, shape=shape, size=size, thickness=thickness)
    return tuple(sorted((k, v) for k, v in items.items() if v is not None))


def matches(obj: SceneObject, flt: Sequence[Tuple[str, str]]) -> bool:
    return all(getattr(obj, k) == v for k, v in flt)


def select(scene: Scene, flt: Sequence[Tuple[str, str]]) -> List[SceneObject]:
    """Shapes of the scene matching a filter, in drawing order."""
    cache = scene.__dict__.setdefault('_select_cache', {})
    key = tuple(flt)
    if key not in cache:
        cache[key] = [o for o in scene.objects if matches(o, key)]
    return cache[key]


def describe(flt: Sequence[Tuple[str, str]]) -> str:
    """Noun phrase without article, e.g. 'small red circle', 'red shape'."""
    d = dict(flt)
    words = [d[k] for k in ('size', 'thickness', 'colour') if k in d]
    words.append(d.get('shape', 'shape'))
    return ' '.join(words)


# --------------------------------------------------------------------------
# resolvers


def _margin(scene: Scene) -> float:
    return POSITION_MARGIN * max(scene.height, scene.width)


def _rank_values(scene: Scene, objs: Sequence[SceneObject],
                 key: str) -> Tuple[np.ndarray, float]:
    """Values sorted ascending in 'rank' order and the tie margin."""
    if key == 'left':
        return np.array([o.cx for o in objs]), _margin(scene)
    if key == 'right':
        return -np.array([o.cx for o in objs]), _margin(scene)
    if key == 'top':
        return np.array([o.cy for o in objs]), _margin(scene)
    if key == 'bottom':
        return -np.array([o.cy for o in objs]), _margin(scene)
    if key == 'large':
        return -np.log([o.full_area for o in objs]), np.log(SIZE_RATIO_MARGIN)
    if key == 'small':
        return np.log([o.full_area for o in objs]), np.log(SIZE_RATIO_MARGIN)
    raise ValueError(f"rank key must be one of 'left', 'right', 'top', "
                     f"'bottom', 'large', 'small', got {key!r}")


def possible_ranks(values: Sequence[float], k: int,
                   margin: float) -> Set[int]:
    """Positions i that may be the k-th smallest when values within
    ``margin`` of each other are indistinguishable."""
    vals = [float(v) for v in values]
    out = set()
    for i, v in enumerate(vals):
        surely_before = sum(1 for j, u in enumerate(vals)
                            if j != i and u < v - margin)
        maybe_before = sum(1 for j, u in enumerate(vals)
                           if j != i and u < v + margin)
        if surely_before <= k - 1 <= maybe_before:
            out.add(i)
    return out


def resolve_attribute(scene: Scene, query: dict) -> Set[int]:
    return {o.index for o in select(scene, query['filter'])}


def resolve_rank(scene: Scene, query: dict) -> Set[int]:
    objs = select(scene, query['filter'])
    if len(objs) < query['k']:
        return set()
    values, margin = _rank_values(scene, objs, query['key'])
    return {objs[i].index for i in possible_ranks(values, query['k'], margin)}


def region_score(scene: Scene, obj: SceneObject, region: str) -> float:
    """Signed distance (pixels) of a shape's centre inside a region."""
    w, h = scene.width, scene.height
    x, y = obj.cx, obj.cy
    scores = {
        'left': w / 2 - x, 'right': x - w / 2,
        'top': h / 2 - y, 'bottom': y - h / 2,
    }
    if region in scores:
        return scores[region]
    if region == 'centre':
        return 0.2 * min(w, h) - max(abs(x - w / 2), abs(y - h / 2))
    parts = region.split(' ')
    if len(parts) == 2 and parts[0] in ('top', 'bottom') and parts[1] in (
            'left', 'right'):
        return min(scores[parts[0]], scores[parts[1]])
    raise ValueError(f'unknown region {region!r}')


def resolve_region(scene: Scene, query: dict) -> Set[int]:
    m = _margin(scene)
    return {o.index for o in select(scene, query['filter'])
            if region_score(scene, o, query['region']) > -m}


def _relation_score(scene: Scene, obj: SceneObject, anchor: SceneObject,
                    rel: str) -> float:
    if rel == 'left':
        return anchor.cx - obj.cx
    if rel == 'right':
        return obj.cx - anchor.cx
    if rel == 'above':
        return anchor.cy - obj.cy
    if rel == 'below':
        return obj.cy - anchor.cy
    raise ValueError(f'unknown relation {rel!r}')


def resolve_relation(scene: Scene, query: dict) -> Set[int]:
    m = _margin(scene)
    out: Set[int] = set()
    for anchor in select(scene, query['anchor']):
        cands = [o for o in select(scene, query['filter'])
                 if o.index != anchor.index]
        if not cands:
            continue
        if query['rel'] == 'nearest':
            d = np.array([np.hypot(o.cx - anchor.cx, o.cy - anchor.cy)
                          for o in cands])
            out |= {cands[i].index for i in possible_ranks(d, 1, m)}
        else:
            out |= {o.index for o in cands
                    if _relation_score(scene, o, anchor, query['rel']) > -m}
    return out


def resolve_occlusion(scene: Scene, query: dict) -> Set[int]:
    rel = query['rel']
    cands = select(scene, query['filter'])
    if rel == 'hidden':
        return {o.index for o in cands
                if 1 - o.visible_area / o.full_area >= COVER_POSSIBLE}
    out: Set[int] = set()
    for anchor in select(scene, query['anchor']):
        for o in cands:
            if o.index == anchor.index:
                continue
            cov = (scene.cover[o.index, anchor.index] if rel == 'hidden_by'
                   else scene.cover[anchor.index, o.index])
            if rel not in ('hidden_by', 'covers'):
                raise ValueError(f'unknown occlusion relation {rel!r}')
            if cov >= COVER_POSSIBLE:
                out.add(o.index)
    return out


RESOLVERS: Dict[str, Callable[[Scene, dict], Set[int]]] = {
    'attribute': resolve_attribute,
    'rank': resolve_rank,
    'region': resolve_region,
    'relation': resolve_relation,
    'occlusion': resolve_occlusion,
}

#: Query kinds allowed for each expression type.
TYPE_KINDS = {
    'attribute': ('attribute',),
    'spatial': ('rank', 'region'),
    'relational': ('relation',),
    'ordinal': ('rank',),
    'boundary': ('attribute', 'occlusion'),
}


def resolve(scene: Scene, query: dict) -> Set[int]:
    """Indices of the scene's shapes that may satisfy ``query``."""
    kind = query.get('kind')
    if kind not in RESOLVERS:
        raise ValueError(f'query kind must be one of {sorted(RESOLVERS)}, '
                         f'got {kind!r}')
    return RESOLVERS[kind](scene, query)


def resolve_expression(scene: Scene, expr: Expression) -> Set[int]:
    """Resolve an expression, checking its query kind suits its type."""
    if expr.query['kind'] not in TYPE_KINDS.get(expr.expr_type, ()):
        raise ValueError(f'query kind {expr.query["kind"]!r} is not allowed '
                         f'for expression type {expr.expr_type!r}')
    return resolve(scene, expr.query)


def tokenize(sentence: str) -> List[str]:
    return re.findall(r"[a-z0-9]+", sentence.lower())


# --------------------------------------------------------------------------
# generation

_RANK_PHRASES = {
    'left': ('the leftmost {d}', 'the {d} on the far left',
             'the {d} furthest to the left'),
    'right': ('the rightmost {d}', 'the {d} on the far right',
              'the {d} furthest to the right'),
    'top': ('the topmost {d}', 'the highest {d}', 'the {d} nearest the top'),
    'bottom': ('the bottommost {d}', 'the lowest {d}',
               'the {d} nearest the bottom'),
}
_ORDINAL_PHRASES = {
    'left': ('the {o} {d} from the left',
             'the {o} {d} counting from the left'),
    'right': ('the {o} {d} from the right',
              'the {o} {d} counting from the right'),
    'top': ('the {o} {d} from the top', 'the {o} {d} counting from the top'),
    'bottom': ('the {o} {d} from the bottom',
               'the {o} {d} counting from the bottom'),
}
_REGION_PHRASES = {
    'top left': ('the {d} in the top left corner', 'the {d} at the top left'),
    'top right': ('the {d} in the top right corner',
                  'the {d} at the top right'),
    'bottom left': ('the {d} in the bottom left corner',
                    'the {d} at the bottom left'),
    'bottom right': ('the {d} in the bottom right corner',
                     'the {d} at the bottom right'),
    'left': ('the {d} on the left side', 'the {d} in the left half'),
    'right': ('the {d} on the right side', 'the {d} in the right half'),
    'top': ('the {d} in the upper half', 'the {d} in the top half'),
    'bottom': ('the {d} in the lower half', 'the {d} in the bottom half'),
    'centre': ('the {d} in the middle', 'the {d} in the centre of the image'),
}
_RELATION_PHRASES = {
    'left': ('the {d} left of the {a}', 'the {d} to the left of the {a}'),
    'right': ('the {d} right of the {a}', 'the {d} to the right of the {a}'),
    'above': ('the {d} above the {a}', 'the {d} higher than the {a}'),
    'below': ('the {d} below the {a}', 'the {d} under the {a}'),
    'nearest': ('the {d} closest to the {a}', 'the {d} nearest to the {a}'),
}
_OCCLUSION_PHRASES = {
    'hidden_by': ('the {d} partly hidden by the {a}', 'the {d} behind the {a}',
                  'the {d} partly covered by the {a}'),
    'covers': ('the {d} in front of the {a}', 'the {d} on top of the {a}',
               'the {d} partly covering the {a}'),
    'hidden': ('the partly hidden {d}', 'the {d} that is partly covered',
               'the occluded {d}'),
}
_THICKNESS_PHRASES = {
    ('ring', 'thin'): ('the {d}', 'the {c}ring with a thin rim',
                       'the {c}ring with the thin edge'),
    ('ring', 'thick'): ('the {d}', 'the {c}ring with a thick rim',
                        'the {c}ring with the thick edge'),
    ('cross', 'thin'): ('the {d}', 'the {c}cross with thin arms'),
    ('cross', 'thick'): ('the {d}', 'the {c}cross with thick arms'),
}


def _target_filters(obj: SceneObject,
                    with_thickness: bool = False) -> List[tuple]:
    """All filters built from subsets of the target's attributes."""
    keys = ['colour', 'shape', 'size']
    out = []
    for n in range(len(keys) + 1):
        for sub in itertools.combinations(keys, n):
            out.append(make_filter(**{k: getattr(obj, k) for k in sub}))
    if with_thickness and obj.thickness is not None:
        out = [make_filter(**dict(f), thickness=obj.thickness) for f in out
               if 'shape' in dict(f)]
    return out


def _unique_filters(scene: Scene, obj: SceneObject) -> List[tuple]:
    """Non-empty filters (without thickness) that pick out ``obj`` alone,
    fewest attributes first."""
    return [f for f in _target_filters(obj)
            if f and [o.index for o in select(scene, f)] == [obj.index]]


def _ok(scene: Scene, query: dict, target: int) -> bool:
    return resolve(scene, query) == {target}


def _attribute_candidates(scene: Scene, obj: SceneObject) -> List[Expression]:
    out = []
    for f in _unique_filters(scene, obj):
        q = dict(kind='attribute', filter=f)
        if not _ok(scene, q, obj.index):
            continue
        d = describe(f)
        texts = ['the ' + d, d]
        if 'shape' not in dict(f):
            texts.append(f'the {d.replace(" shape", "")} one')
        out += [Expression('attribute', t, q, obj.index) for t in texts]
    return out


def _context_filters(scene: Scene, obj: SceneObject,
                     min_count: int) -> List[tuple]:
    return [f for f in _target_filters(obj)
            if len(select(scene, f)) >= min_count]


def _spatial_candidates(scene: Scene, obj: SceneObject) -> List[Expression]:
    out = []
    m = _margin(scene)
    for f in _context_filters(scene, obj, 2):
        d = describe(f)
        for key, phrases in _RANK_PHRASES.items():
            q = dict(kind='rank', filter=f, key=key, k=1)
            if _ok(scene, q, obj.index):
                out += [Expression('spatial', p.format(d=d), q, obj.index)
                        for p in phrases]
        for region, phrases in _REGION_PHRASES.items():
            q = dict(kind='region', filter=f, region=region)
            if region_score(scene, obj, region) > m and _ok(
                    scene, q, obj.index):
                out += [Expression('spatial', p.format(d=d), q, obj.index)
                        for p in phrases]
    return out


def _ordinal_candidates(scene: Scene, obj: SceneObject) -> List[Expression]:
    out = []
    for f in _context_filters(scene, obj, 2):
        d = describe(f)
        count = len(select(scene, f))
        if count >= 3:
            for key, phrases in _ORDINAL_PHRASES.items():
                for k in range(2, count):  # the last is an extreme
                    q = dict(kind='rank', filter=f, key=key, k=k)
                    if _ok(scene, q, obj.index):
                        out += [Expression('ordinal',
                                           p.format(o=_ORDINALS[k], d=d), q,
                                           obj.index) for p in phrases]
        f_nosize = tuple(kv for kv in f if kv[0] != 'size')
        if f_nosize != f:
            continue  # 'the larger small circle' would read oddly
        for key in ('large', 'small'):
            q = dict(kind='rank', filter=f, key=key, k=1)
            if _ok(scene, q, obj.index):
                if count == 2:
                    words = (('larger', 'bigger') if key == 'large' else
                             ('smaller', ))
                else:
                    words = (('largest', 'biggest') if key == 'large' else
                             ('smallest', ))
                out += [Expression('ordinal', f'the {w} {d}', q, obj.index)
                        for w in words]
            if count >= 3:
                q = dict(kind='rank', filter=f, key=key, k=2)
                if _ok(scene, q, obj.index):
                    w = 'largest' if key == 'large' else 'smallest'
                    out.append(Expression('ordinal',
                                          f'the second {w} {d}', q,
                                          obj.index))
    return out


def _anchor_filters(scene: Scene, target: SceneObject) -> List[
        Tuple[SceneObject, tuple]]:
    """Up to two unique descriptions of every other shape, the full
    'colour shape' first (the most natural anchor), then the shortest."""
    out = []
    for other in scene.objects:
        if other.index == target.index:
            continue
        filters = sorted(_unique_filters(scene, other),
                         key=lambda f: (dict(f).keys() != {'colour', 'shape'},
                                        len(f)))
        for f in filters[:2]:
            out.append((other, f))
    return out


def _relational_candidates(scene: Scene,
                           obj: SceneObject) -> List[Expression]:
    out = []
    m = _margin(scene)
    anchors = _anchor_filters(scene, obj)
    for f in _context_filters(scene, obj, 2):
        d = describe(f)
        for anchor, af in anchors:
            a = describe(af)
            for rel, phrases in _RELATION_PHRASES.items():
                if rel != 'nearest' and _relation_score(scene, obj, anchor,
                                                        rel) <= m:
                    continue
                q = dict(kind='relation', filter=f, rel=rel, anchor=af)
                if _ok(scene, q, obj.index):
                    out += [Expression('relational',
                                       p.format(d=d, a=a), q, obj.index)
                            for p in phrases]
    return out


def _boundary_candidates(scene: Scene, obj: SceneObject) -> List[Expression]:
    out = []
    if obj.thickness is not None:
        for f in _target_filters(obj, with_thickness=True):
            if 'size' in dict(f):
                continue
            q = dict(kind='attribute', filter=f)
            if not _ok(scene, q, obj.index):
                continue
            c = dict(f).get('colour')
            c = c + ' ' if c else ''
            for p in _THICKNESS_PHRASES[(obj.shape, obj.thickness)]:
                out.append(Expression('boundary',
                                      p.format(d=describe(f), c=c), q,
                                      obj.index))
    hidden = 1 - obj.visible_area / obj.full_area
    filters = _target_filters(obj)
    if hidden >= COVER_DEFINITE:
        for f in filters:
            q = dict(kind='occlusion', filter=f, rel='hidden', anchor=())
            if _ok(scene, q, obj.index):
                out += [Expression('boundary', p.format(d=describe(f)), q,
                                   obj.index)
                        for p in _OCCLUSION_PHRASES['hidden']]
    anchors = _anchor_filters(scene, obj)
    for anchor, af in anchors:
        for rel in ('hidden_by', 'covers'):
            cov = (scene.cover[obj.index, anchor.index] if rel == 'hidden_by'
                   else scene.cover[anchor.index, obj.index])
            if cov < COVER_DEFINITE:
                continue
            for f in filters:
                q = dict(kind='occlusion', filter=f, rel=rel, anchor=af)
                if _ok(scene, q, obj.index):
                    out += [Expression('boundary',
                                       p.format(d=describe(f),
                                                a=describe(af)), q, obj.index)
                            for p in _OCCLUSION_PHRASES[rel]]
    return out


CANDIDATE_BUILDERS = {
    'attribute': _attribute_candidates,
    'spatial': _spatial_candidates,
    'relational': _relational_candidates,
    'ordinal': _ordinal_candidates,
    'boundary': _boundary_candidates,
}


def expression_candidates(scene: Scene, obj: SceneObject,
                          expr_type: str) -> List[Expression]:
    """All unambiguous expressions of one type for ``obj`` (distinct texts,
    in a fixed order)."""
    if expr_type not in CANDIDATE_BUILDERS:
        raise ValueError(f'expr_type must be one of {EXPR_TYPES}, got '
                         f'{expr_type!r}')
    seen, out = set(), []
    for e in CANDIDATE_BUILDERS[expr_type](scene, obj):
        if e.text not in seen:
            seen.add(e.text)
            out.append(e)
    return out


def pick_expressions(rng: np.random.Generator,
                     candidates: Sequence[Expression],
                     num: int) -> List[Expression]:
    """Up to ``num`` expressions with distinct texts, preferring distinct
    queries (so the sentences of a ref are not all paraphrases of one
    another)."""
    order = rng.permutation(len(candidates))
    chosen, queries = [], []
    for i in order:  # first pass: new queries
        if repr(candidates[i].query) not in queries:
            chosen.append(int(i))
            queries.append(repr(candidates[i].query))
        if len(chosen) == num:
            break
    for i in order:  # second pass: paraphrases
        if len(chosen) == num:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return [candidates[i] for i in chosen]
