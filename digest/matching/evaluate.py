"""Evaluate a parsed query against an edition index: which papers match, and on which words.

Two passes: sets of papers first (cheap set algebra), then, for the papers that matched, the
occurrences that made them match (the words of included terms; exclusions contribute none).
The result is cached on the index under the query's canonical key.
"""

from __future__ import annotations

from collections.abc import Callable, Set

from digest.matching.index import EditionIndex
from digest.matching.query import AllWords, And, Node, Not, Or, Query, Term

Evidence = tuple[int, ...]  # sorted (field << FIELD_SHIFT) | occurrence, see index.py
QueryHits = dict[int, Evidence]  # paper position in the edition -> why it matched


def evaluate(index: EditionIndex, query: Query) -> QueryHits:
    cached = index.query_cache.get(query.key)
    if cached is not None:
        return cached
    sets: dict[int, Set[int]] = {}
    matched = _papers(index, query.root, sets)
    hits: QueryHits = {}
    for paper in matched:
        found: set[int] = set()
        _evidence(index, query.root, paper, sets, found)
        hits[paper] = tuple(sorted(found))
    index.query_cache[query.key] = hits
    return hits


def matched_and_titled(index: EditionIndex, query: Query, check: Callable[[], None] | None = None
                       ) -> tuple[Set[int], Set[int]]:
    """The papers the query matches, and those among them whose evidence (what evaluate() would
    collect) holds a title occurrence: all that ranking needs, without collecting the evidence.
    Mirrors _papers (the sets) and _evidence (an And shows its included children's words, an Or
    the words of the children a paper matches, an exclusion none). `check` is called before each
    word or phrase is looked up (it may raise to stop)."""
    return _sets(index, query.root, check or _go_on)


def _go_on() -> None:
    return None


def _sets(index: EditionIndex, node: Node, check: Callable[[], None]) -> tuple[Set[int], Set[int]]:
    if isinstance(node, (Term, AllWords)):
        check()
        matched, titled = index.term_papers(node)
        return matched, titled
    if isinstance(node, Not):
        return set(range(len(index))) - _sets(index, node.child, check)[0], set()
    if isinstance(node, Or):
        pairs = [_sets(index, child, check) for child in node.children]
        return set().union(*(m for m, _ in pairs)), set().union(*(t for _, t in pairs))
    included = [_sets(index, child, check) for child in node.children if not isinstance(child, Not)]
    if included:
        ordered = sorted((m for m, _ in included), key=len)
        matched = set(ordered[0]).intersection(*ordered[1:])
    else:
        matched = set(range(len(index)))
    for child in node.children:
        if isinstance(child, Not) and matched:
            matched -= _sets(index, child.child, check)[0]
    return matched, set().union(*(t for _, t in included)) & matched


def _papers(index: EditionIndex, node: Node, sets: dict[int, Set[int]]) -> Set[int]:
    if isinstance(node, (Term, AllWords)):
        result = index.term_hits(node).papers
    elif isinstance(node, Not):
        result = set(range(len(index))) - _papers(index, node.child, sets)
    elif isinstance(node, Or):
        result = set()
        for child in node.children:
            result |= _papers(index, child, sets)
    else:
        included = [child for child in node.children if not isinstance(child, Not)]
        excluded = [child.child for child in node.children if isinstance(child, Not)]
        if included:
            parts = sorted((_papers(index, child, sets) for child in included), key=len)
            result = set(parts[0]).intersection(*parts[1:])
        else:
            result = set(range(len(index)))
        for child in excluded:
            if not result:
                break
            result -= _papers(index, child, sets)
    sets[id(node)] = result
    return result


def _evidence(index: EditionIndex, node: Node, paper: int, sets: dict[int, Set[int]], found: set) -> None:
    if isinstance(node, (Term, AllWords)):
        hits = index.term_hits(node)
        if paper in hits.papers:
            found.update(hits.evidence(paper))
    elif isinstance(node, And):
        for child in node.children:
            if not isinstance(child, Not):
                _evidence(index, child, paper, sets, found)
    elif isinstance(node, Or):
        for child in node.children:
            if paper in sets.get(id(child), ()):
                _evidence(index, child, paper, sets, found)
