"""Generalised referring expressions (gRefCOCO-style): several targets or
none, with explicit resolvers.

The single-target resolvers of :mod:`.expressions` return the shapes that
*may* satisfy a query (within a margin of the decision boundary). A
generalised expression must name an exact *set*, so this module resolves a
query into two sets:

* ``lenient``: the shapes that may satisfy it (as :func:`.resolve`);
* ``strict``: the shapes that satisfy it by more than the margin.

A query is *exact* when both sets are equal (no shape lies near a decision
boundary). Then:

* a **multi-target** expression (``expr_type='multi'``) is kept when its
  exact set has at least two shapes, all of them referable;
* a **no-target** expression (``expr_type='no_target'``) is kept when its
  lenient set is empty: no shape of the scene satisfies it, not even within
  the margin.

Query kinds (the single-target kinds; ``rank`` and the ``nearest``,
``hidden_by`` and ``covers`` relations name one object and are not used):

* ``attribute``: ``filter`` -> every matching shape ("all the red circles",
  "both squares"; no target: "the green star" when there is none);
* ``region``: ``filter``, ``region`` -> matching shapes whose centre lies
  in the region ("the circles on the left side");
* ``relation``: ``filter``, ``rel`` in 'left', 'right', 'above', 'below',
  ``anchor`` (a filter naming exactly one shape) -> matching shapes in that
  relation to the anchor ("every shape left of the ring");
* ``occlusion`` with ``rel='hidden'`` -> matching shapes partly covered
  ("the partly hidden shapes"; multi-target only).

No-target attribute filters never name a colour-shape pair held out for the
compositional testB split, except in testB itself: a training sentence
"the orange circle" with an always-empty mask would teach that the pair
never exists.
"""
import itertools
from dataclasses import dataclass
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from .expressions import (_REGION_PHRASES, _RELATION_PHRASES, COVER_DEFINITE,
                          COVER_POSSIBLE, _margin, _relation_score,
                          _target_filters, _unique_filters, describe,
                          make_filter, pick_expressions, region_score,
                          select)
from .scenes import COLOUR_NAMES, HELDOUT_PAIRS, SIZES, Scene, referable
from .shapes import SHAPE_NAMES

#: Expression types added by the generalised variant.
GREF_TYPES = ('multi', 'no_target')
#: Relations usable with several targets.
SET_RELATIONS = ('left', 'right', 'above', 'below')

_PLURAL = {'circle': 'circles', 'square': 'squares', 'triangle': 'triangles',
           'star': 'stars', 'ring': 'rings', 'cross': 'crosses',
           'polygon': 'polygons', 'shape': 'shapes'}
_NUMBERS = {2: 'two', 3: 'three', 4: 'four', 5: 'five', 6: 'six'}
#: "in the top left corner", ... (the region phrases without "the {d} ").
_REGION_WHERE = {r: tuple(p.replace('the {d} ', '') for p in phrases)
                 for r, phrases in _REGION_PHRASES.items()}
#: "left of the {a}", ... for the set relations.
_RELATION_WHERE = {r: tuple(p.replace('the {d} ', '') for p in phrases)
                   for r, phrases in _RELATION_PHRASES.items()
                   if r in SET_RELATIONS}


@dataclass(frozen=True)
class GExpression:
    """One generalised referring expression.

    Attributes:
        expr_type: 'multi' or 'no_target'.
        text: the sentence.
        query: the structured query (see the module doc).
        targets: sorted indices of the referred shapes (empty for none).
    """
    expr_type: str
    text: str
    query: dict
    targets: Tuple[int, ...]


def describe_plural(flt: Sequence[Tuple[str, str]]) -> str:
    """Plural noun phrase without article, e.g. 'small red circles',
    'red shapes', 'crosses'."""
    words = describe(flt).split(' ')
    words[-1] = _PLURAL[words[-1]]
    return ' '.join(words)


# --------------------------------------------------------------------------
# resolvers


def resolve_bounds(scene: Scene, query: dict) -> Tuple[Set[int], Set[int]]:
    """(lenient, strict) index sets of a generalised query.

    ``lenient`` holds the shapes that may satisfy the query (positions and
    overlaps within the margin count), ``strict`` those that satisfy it by
    more than the margin (for a relation: to every shape the anchor filter
    matches).

    Raises:
        ValueError: a kind or relation that names a single object.
    """
    kind = query.get('kind')
    if kind == 'attribute':
        found = {o.index for o in select(scene, query['filter'])}
        return found, set(found)
    m = _margin(scene)
    if kind == 'region':
        scores = {o.index: region_score(scene, o, query['region'])
                  for o in select(scene, query['filter'])}
        return ({i for i, s in scores.items() if s > -m},
                {i for i, s in scores.items() if s > m})
    if kind == 'relation':
        if query['rel'] not in SET_RELATIONS:
            raise ValueError(f"relation {query['rel']!r} names one object; "
                             f'generalised relations are {SET_RELATIONS}')
        anchors = select(scene, query['anchor'])
        lenient: Set[int] = set()
        strict: Set[int] = set()
        for k, anchor in enumerate(anchors):
            scores = {o.index: _relation_score(scene, o, anchor, query['rel'])
                      for o in select(scene, query['filter'])
                      if o.index != anchor.index}
            lenient |= {i for i, s in scores.items() if s > -m}
            sure = {i for i, s in scores.items() if s > m}
            strict = sure if k == 0 else strict & sure
        return lenient, strict
    if kind == 'occlusion':
        if query['rel'] != 'hidden':
            raise ValueError(f"occlusion relation {query['rel']!r} names one "
                             "object; generalised occlusion is 'hidden'")
        hidden = {o.index: 1 - o.visible_area / o.full_area
                  for o in select(scene, query['filter'])}
        return ({i for i, h in hidden.items() if h >= COVER_POSSIBLE},
                {i for i, h in hidden.items() if h >= COVER_DEFINITE})
    raise ValueError(f"generalised query kind must be 'attribute', "
                     f"'region', 'relation' or 'occlusion', got {kind!r}")


def gref_targets(scene: Scene, query: dict):
    """The exact target set of a query as a sorted tuple, or None when the
    query is ambiguous (a shape lies within the margin of a boundary)."""
    lenient, strict = resolve_bounds(scene, query)
    if lenient != strict:
        return None
    return tuple(sorted(lenient))


def check_gexpression(scene: Scene, expr: GExpression) -> bool:
    """Whether an expression names exactly its targets: a multi-target one
    an exact set of >= 2 shapes equal to ``targets``, a no-target one a
    query nothing satisfies (its lenient set is empty)."""
    lenient, strict = resolve_bounds(scene, expr.query)
    if expr.expr_type == 'no_target':
        return not lenient and expr.targets == ()
    if expr.expr_type == 'multi':
        return (lenient == strict and len(lenient) >= 2
                and tuple(sorted(lenient)) == expr.targets)
    raise ValueError(f"expr_type must be one of {GREF_TYPES}, got "
                     f'{expr.expr_type!r}')


# --------------------------------------------------------------------------
# candidates


def scene_filters(scene: Scene) -> List[tuple]:
    """Every filter built from a subset of one shape's colour, shape and
    size (the empty filter included), in a fixed order."""
    seen, out = set(), []
    for obj in scene.objects:
        for f in _target_filters(obj):
            if f not in seen:
                seen.add(f)
                out.append(f)
    return sorted(out, key=lambda f: (len(f), f))


def _names_heldout(flt: Sequence[Tuple[str, str]]) -> bool:
    d = dict(flt)
    return (d.get('colour'), d.get('shape')) in set(HELDOUT_PAIRS)


def _anchors(scene: Scene) -> List[Tuple[int, tuple]]:
    """(index, filter) of every shape with a unique description (at most
    two per shape, 'colour shape' first)."""
    out = []
    for obj in scene.objects:
        filters = sorted(_unique_filters(scene, obj),
                         key=lambda f: (dict(f).keys() != {'colour', 'shape'},
                                        len(f)))
        out += [(obj.index, f) for f in filters[:2]]
    return out


def _set_texts(flt: tuple, n: int, where: str = '') -> List[str]:
    """Plural phrasings of ``n`` shapes matching ``flt`` (+ a location)."""
    p, d = describe_plural(flt), describe(flt)
    tail = f' {where}' if where else ''
    texts = [f'all the {p}{tail}', f'every {d}{tail}', f'the {p}{tail}']
    if n == 2:
        texts += [f'both {p}{tail}', f'the two {p}{tail}']
    elif n in _NUMBERS:
        texts += [f'all {_NUMBERS[n]} {p}{tail}',
                  f'the {_NUMBERS[n]} {p}{tail}']
    return texts


def multi_candidates(scene: Scene,
                     require_heldout: bool = False) -> List[GExpression]:
    """Every exact multi-target expression of a scene (distinct texts, in a
    fixed order).

    Args:
        scene: the scene.
        require_heldout: keep only target sets with a held-out colour-shape
            pair (the compositional testB split).
    """
    ok_targets = {o.index for o in scene.objects if referable(scene, o)}
    heldout = set(HELDOUT_PAIRS)
    out: List[GExpression] = []

    def add(query: dict, texts, within: Set[int]) -> None:
        # texts: n -> the sentences for n targets
        targets = gref_targets(scene, query)
        if targets is None or len(targets) < 2:
            return
        if not set(targets) <= ok_targets:
            return
        if within and set(targets) == within:
            return  # the location adds nothing ("the red shapes" will do)
        if require_heldout and not any(scene.objects[i].pair in heldout
                                       for i in targets):
            return
        n = len(targets)
        out.extend(GExpression('multi', t, query, targets)
                   for t in texts(n))

    anchors = _anchors(scene)
    for f in scene_filters(scene):
        matched = {o.index for o in select(scene, f)}
        if len(matched) < 2:
            continue
        add(dict(kind='attribute', filter=f),
            lambda n, f=f: _set_texts(f, n), set())
        for region, wheres in _REGION_WHERE.items():
            add(dict(kind='region', filter=f, region=region),
                lambda n, f=f, w=wheres: [t for where in w
                                          for t in _set_texts(f, n, where)],
                matched)
        for index, af in anchors:
            others = matched - {index}
            if len(others) < 2:
                continue
            a = describe(af)
            for rel, wheres in _RELATION_WHERE.items():
                add(dict(kind='relation', filter=f, rel=rel, anchor=af),
                    lambda n, f=f, w=wheres, a=a: [
                        t for where in w
                        for t in _set_texts(f, n, where.format(a=a))],
                    others)
        p, d = describe_plural(f), describe(f)
        add(dict(kind='occlusion', filter=f, rel='hidden', anchor=()),
            lambda n, p=p, d=d: [f'all the partly hidden {p}',
                                 f'the {p} that are partly covered',
                                 f'every occluded {d}'], matched)
    seen, unique = set(), []
    for e in out:
        if e.text not in seen:
            seen.add(e.text)
            unique.append(e)
    return unique


def _absent_filters(scene: Scene, allow_heldout: bool) -> List[tuple]:
    """Attribute filters no shape of the scene matches, kept close to the
    scene (a colour or a shape it shows, or a size it shows of a present
    colour-shape pair), so they are hard to reject from one cue."""
    colours = {o.colour for o in scene.objects}
    shapes = {o.shape for o in scene.objects}
    out = []
    for c, s in itertools.product(COLOUR_NAMES, SHAPE_NAMES):
        if c in colours or s in shapes:
            out.append(make_filter(colour=c, shape=s))
    out += [make_filter(shape=s) for s in SHAPE_NAMES]
    out += [make_filter(colour=c) for c in COLOUR_NAMES]
    for o in scene.objects:
        for size in SIZES:
            out.append(make_filter(colour=o.colour, shape=o.shape, size=size))
    keep, seen = [], set()
    for f in out:
        if f in seen or select(scene, f):
            continue
        if not allow_heldout and _names_heldout(f):
            continue
        seen.add(f)
        keep.append(f)
    return keep


def no_target_candidates(scene: Scene,
                         allow_heldout: bool = False
                         ) -> Dict[str, List[GExpression]]:
    """Expressions nothing in the scene satisfies, by query kind
    ('attribute', 'region', 'relation'; a kind without any is left out).

    Args:
        scene: the scene.
        allow_heldout: allow attribute filters naming a held-out pair
            (testB only).
    """
    out: Dict[str, List[GExpression]] = {}

    def add(kind: str, query: dict, texts: Sequence[str]) -> None:
        lenient, _ = resolve_bounds(scene, query)
        if lenient:
            return
        out.setdefault(kind, []).extend(
            GExpression('no_target', t, query, ()) for t in texts)

    for f in _absent_filters(scene, allow_heldout):
        d = describe(f)
        texts = ['the ' + d, d]
        if 'shape' not in dict(f):
            texts.append(f'the {d.replace(" shape", "")} one')
        add('attribute', dict(kind='attribute', filter=f), texts)
    anchors = _anchors(scene)
    for f in scene_filters(scene):
        if not f:
            continue  # "the shape in the corner" is vague, not wrong
        matched = {o.index for o in select(scene, f)}
        if not matched:
            continue
        d = describe(f)
        for region, phrases in _REGION_PHRASES.items():
            add('region', dict(kind='region', filter=f, region=region),
                [p.format(d=d) for p in phrases])
        for index, af in anchors:
            if not matched - {index}:
                continue
            a = describe(af)
            for rel in SET_RELATIONS:
                add('relation',
                    dict(kind='relation', filter=f, rel=rel, anchor=af),
                    [p.format(d=d, a=a) for p in _RELATION_PHRASES[rel]])
    for kind, exprs in out.items():
        seen, unique = set(), []
        for e in exprs:
            if e.text not in seen:
                seen.add(e.text)
                unique.append(e)
        out[kind] = unique
    return out


def choose_gref_refs(rng: np.random.Generator, scene: Scene,
                     compositional: bool, multi_prob: float,
                     no_target_prob: float
                     ) -> List[Tuple[str, Tuple[int, ...], List[GExpression]]]:
    """At most one multi-target and one no-target ref for a scene:
    ``(expr_type, targets, expressions)``.

    With probability ``multi_prob`` a multi-target ref: a query kind drawn
    uniformly among those with an exact set, then one of its target sets,
    then 2-3 sentences naming exactly that set (of any kind; distinct
    queries preferred). With probability ``no_target_prob`` a no-target ref:
    a kind drawn uniformly, then 2 of its sentences (distinct queries
    preferred; 1 if it has one)."""
    out = []
    if rng.random() < multi_prob:
        cands = multi_candidates(scene, require_heldout=compositional)
        kinds = sorted({e.query['kind'] for e in cands})
        if kinds:
            kind = kinds[int(rng.integers(len(kinds)))]
            sets = sorted({e.targets for e in cands
                           if e.query['kind'] == kind})
            targets = sets[int(rng.integers(len(sets)))]
            same = [e for e in cands if e.targets == targets]
            num = 2 + int(rng.random() < 0.5 and len(same) >= 3)
            out.append(('multi', targets, pick_expressions(rng, same, num)))
    if rng.random() < no_target_prob:
        by_kind = no_target_candidates(scene, allow_heldout=compositional)
        kinds = sorted(by_kind)
        if kinds:
            kind = kinds[int(rng.integers(len(kinds)))]
            cands = by_kind[kind]
            out.append(('no_target', (),
                        pick_expressions(rng, cands, min(2, len(cands)))))
    return out

