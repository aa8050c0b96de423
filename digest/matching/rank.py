"""Rank an edition's papers for subscribers, and explain each match.

Digest order (stable, documented in docs/query-language.md):
  1. score, highest first: each of the subscriber's topics that matches the paper adds
     TITLE_WEIGHT if some of its words are in the title, else 1 (abstract, author or category);
  2. Hugging Face upvotes, most first;
  3. publication time, newest first (papers without one last);
  4. arXiv id, ascending.

For many subscribers the work is shared: each distinct topic is evaluated once per edition and
turned once into single-topic Match records, each under an int sort key that is unique in the
edition. A subscriber's digest is then mostly C work: concatenate their topics' keys, sort, look
up. Only papers that several of their topics match get a combined Match (shared within one
call: readers who share topics share combinations). Overlaps are found with one bit mask per topic.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter

from digest.matching.evaluate import Evidence, evaluate
from digest.matching.index import FIELD_SHIFT, LAST, POSITION_BITS, EditionIndex, paused_gc
from digest.matching.query import ABSTRACT, AUTHOR, CATEGORY, TITLE, QueryError, parse_query
from digest.matching.results import Match, Span

log = logging.getLogger(__name__)

TITLE_WEIGHT = 2
_FIELD_KEYS = {TITLE: "title", ABSTRACT: "abstract"}


@dataclass(eq=False)  # compared and hashed by identity: one object per topic and edition
class _TopicMatches:
    """One topic's matches in one edition, as a subscriber with only this topic would get them."""

    topic: str
    number: int  # the topic's slot in sort keys, unique in the edition
    papers: frozenset[int]
    mask: int  # bit n set: paper n matches
    match_of: dict[int, Match]  # paper -> its Match with this topic alone
    ranked: list[Match]
    keys: tuple[int, ...] = ()  # edition-wide sort keys of the single-topic matches (see _file)
    key_of: dict[int, int] = field(default_factory=dict)  # paper -> its key above


_KEYS = attrgetter("keys")
_SCORE = attrgetter("score")
_MATCHED = attrgetter("matched")


def _weight(evidence: Evidence) -> int:
    # Evidence is sorted, field first: a title occurrence, if any, comes first.
    return TITLE_WEIGHT if evidence and evidence[0] >> FIELD_SHIFT == TITLE else 1


def _sort_key(index: EditionIndex, paper: int, score: int, slot: int = 0) -> int:
    # One small int, so that digests sort in C: higher score first, then the index's tie-break
    # order (unique per paper, < len(index)), then a slot: the topic's number, so that single-topic
    # keys are unique edition-wide; a combination takes slot 0, unique within its digest.
    return (-score * len(index) + index.tiebreak[paper]) * index.topic_slots + slot


def _renumber(index: EditionIndex) -> None:
    """More topics than slots: widen the slots and recompute every key (rare, amortised)."""
    index.topic_slots *= 4
    index.matches_by_key.clear()
    for matches in index.topic_cache.values():
        if matches is not None:
            _file(index, matches)


def _file(index: EditionIndex, matches: _TopicMatches) -> None:
    """Give a topic's single matches their edition-wide keys."""
    by_key = index.matches_by_key
    key_of = {}
    for paper, match in matches.match_of.items():
        key = key_of[paper] = _sort_key(index, paper, int(match.score), matches.number)
        by_key[key] = match
    matches.key_of = key_of
    matches.keys = tuple(sorted(key_of.values()))


def _merge_spans(spans: list[Span]) -> tuple[Span, ...]:
    """Sorted, with overlaps merged; spans that need no change are kept as they are (the same
    objects: a hundred thousand digests share them)."""
    ordered = sorted(spans)
    bounds = list(chain.from_iterable(ordered))
    if bounds == sorted(bounds):
        return tuple(ordered)  # nothing overlaps (the usual case), checked in C
    merged: list[Span] = []
    for span in ordered:
        if merged and span[0] <= merged[-1][1]:
            if span[1] > merged[-1][1]:
                merged[-1] = (merged[-1][0], span[1])
        else:
            merged.append(span)
    return tuple(merged)


def _explain(index: EditionIndex, paper: int, evidence: Evidence):
    """The words exactly as the paper spells them, and their offsets in title and abstract.
    Evidence comes sorted by field and position, so spans arrive in text order and overlapping
    ones (a phrase and a word inside it) merge as they come."""
    by_field: dict[int, list[list[int]]] = {}
    offsets_of = index.offsets
    for item in evidence:
        field = item >> FIELD_SHIFT
        offsets = offsets_of[field][paper]
        start = offsets[((item >> POSITION_BITS) & LAST) << 1]
        end = offsets[((item & LAST) << 1) + 1]
        spans = by_field.get(field)
        if spans is None:
            by_field[field] = [[start, end]]
        elif start <= spans[-1][1]:
            if end > spans[-1][1]:
                spans[-1][1] = end
        else:
            spans.append([start, end])
    words: dict[str, None] = {}
    highlights: dict[str, tuple[Span, ...]] = {"title": (), "abstract": ()}
    for field, spans in by_field.items():  # fields in order: title, abstract, authors, categories
        text = index.texts[field][paper]
        for start, end in spans:
            words[text[start:end]] = None
        if field in _FIELD_KEYS:
            highlights[_FIELD_KEYS[field]] = tuple((start, end) for start, end in spans)
    return tuple(words), highlights


def _topic_matches(index: EditionIndex, topic: str) -> _TopicMatches | None:
    """Evaluate one topic, once per edition; None when it matches nothing (or does not parse)."""
    if topic in index.topic_cache:
        return index.topic_cache[topic]
    try:
        query = parse_query(topic)
    except QueryError as exc:
        # A stored topic the parser refuses (it was validated when saved, so the grammar changed):
        # skip it, keep the subscriber's other topics.
        log.warning("skipping %s", exc)
        index.topic_cache[topic] = None
        return None
    hits = evaluate(index, query)
    if not hits:
        index.topic_cache[topic] = None
        return None
    match_of: dict[int, Match] = {}
    mask = 0
    for paper, evidence in hits.items():
        score = _weight(evidence)
        matched, highlights = _explain(index, paper, evidence)
        match_of[paper] = Match(index.papers[paper], float(score), (topic,), matched, highlights)
        mask |= 1 << paper
    index.topics_numbered += 1
    result = _TopicMatches(topic, index.topics_numbered, frozenset(hits), mask, match_of, [])
    if result.number >= index.topic_slots:
        _renumber(index)
    _file(index, result)
    result.ranked = [index.matches_by_key[key] for key in result.keys]
    index.topic_cache[topic] = result
    return result


def _combined(
    index: EditionIndex, paper: int, topics: list[_TopicMatches], cache: dict[tuple, Match]
) -> tuple[int, Match]:
    """One paper that several of a subscriber's topics match: scores add up, words and highlights
    are the union of each topic's (words in topic order, then as they stand in the paper)."""
    names = tuple([topic.topic for topic in topics])
    cached = cache.get((paper, names))
    if cached is not None:
        return _sort_key(index, paper, int(cached.score)), cached
    singles = [topic.match_of[paper] for topic in topics]
    score = sum(map(_SCORE, singles))
    matched = tuple(dict.fromkeys(chain.from_iterable(map(_MATCHED, singles))))
    highlights = {}
    for name in ("title", "abstract"):
        spans = [found for found in (single.highlights[name] for single in singles) if found]
        highlights[name] = spans[0] if len(spans) == 1 else _merge_spans(list(chain.from_iterable(spans)))
    match = cache[(paper, names)] = Match(index.papers[paper], score, names, matched, highlights)
    return _sort_key(index, paper, int(score)), match


def _take_shared(found: list[_TopicMatches], ordered: list[int], several: int):
    """Each paper that several topics match (a bit of `several`), with the topics that share it;
    their single-topic keys are removed from `ordered` to make way for one combined entry."""
    while several:
        lowest = several & -several
        paper = lowest.bit_length() - 1
        several ^= lowest
        sharing = [matches for matches in found if matches.mask & lowest]
        for matches in sharing:
            del ordered[bisect_left(ordered, matches.key_of[paper])]
        yield paper, sharing


def _digest(index: EditionIndex, topics: Sequence[str], combinations: dict[tuple, Match]) -> list[Match]:
    # Runs once per subscriber, after every topic was evaluated: it only merges what was computed
    # once per topic, in C where it can (map, dict.fromkeys, sorting small ints, big-int masks).
    found: list[_TopicMatches] = list(dict.fromkeys(filter(None, map(index.topic_cache.get, topics))))
    if not found:
        return []
    if len(found) == 1:
        return found[0].ranked.copy()
    seen = several = 0
    for matches in found:
        several |= seen & matches.mask
        seen |= matches.mask
    by_key = index.matches_by_key
    if not several:
        return list(map(by_key.__getitem__, sorted(chain.from_iterable(map(_KEYS, found)))))
    # Papers several topics match: their single-topic entries make way for one combined match,
    # slotted into place by its key.
    ordered = sorted(chain.from_iterable(map(_KEYS, found)))  # sorted runs: cheap
    combined = []
    for paper, sharing in _take_shared(found, ordered, several):
        combined.append(_combined(index, paper, sharing, combinations))
    digest = list(map(by_key.__getitem__, ordered))
    for key, match in sorted(combined, key=itemgetter(0)):
        at = bisect_left(ordered, key)
        ordered.insert(at, key)
        digest.insert(at, match)
    return digest


class Top(list):
    """A digest cut to its first N matches (in digest order); `total` counts every match."""

    __slots__ = ("total",)

    def __init__(self, matches: Iterable[Match] = (), total: int = 0) -> None:
        super().__init__(matches)
        self.total = total


def _top(index: EditionIndex, topics: Sequence[str], combinations: dict[tuple, Match], limit: int) -> Top:
    """The first `limit` matches of _digest(...) and how many there are in all; combined matches
    are made only for the papers that make the cut (their keys are computed first, from scores)."""
    found: list[_TopicMatches] = list(dict.fromkeys(filter(None, map(index.topic_cache.get, topics))))
    if not found:
        return Top()
    if len(found) == 1:
        ranked = found[0].ranked
        return Top(ranked[:limit], len(ranked))
    seen = several = 0
    for matches in found:
        several |= seen & matches.mask
        seen |= matches.mask
    total = seen.bit_count()
    by_key = index.matches_by_key
    ordered = sorted(chain.from_iterable(map(_KEYS, found)))  # sorted runs: cheap
    if not several:
        return Top(map(by_key.__getitem__, ordered[:limit]), total)
    # Papers several topics match: their single-topic keys make way for the combined key (slot 0,
    # unique within the digest), computed from the scores alone.
    pending: dict[int, tuple[int, list[_TopicMatches]]] = {}
    for paper, sharing in _take_shared(found, ordered, several):
        score = int(sum(matches.match_of[paper].score for matches in sharing))
        pending[_sort_key(index, paper, score)] = (paper, sharing)
    ordered.extend(pending)
    ordered.sort()
    shown = []
    for key in ordered[:limit]:
        combined = pending.get(key)
        if combined is None:
            shown.append(by_key[key])
        else:
            shown.append(_combined(index, combined[0], combined[1], combinations)[1])
    return Top(shown, total)


def _evaluate_all(index: EditionIndex, topics: Iterable[str]) -> None:
    for topic in topics:
        if topic not in index.topic_cache:
            _topic_matches(index, topic)


def rank(index: EditionIndex, topics: Sequence[str], limit: int | None = None) -> list[Match]:
    """One subscriber's digest: the edition's papers matching at least one topic, in digest order."""
    _evaluate_all(index, topics)
    matches = _digest(index, topics, {})
    return matches if limit is None else matches[:limit]


def match_subscribers(
    index: EditionIndex,
    topics_by_subscriber: Mapping[int, Sequence[str]],
    limit: int | Mapping[int, int] | Callable[[int], int] | None = None,
) -> dict[int, list[Match]]:
    """Every subscriber's digest for this edition; subscribers with no match are absent. Each
    distinct topic is evaluated once, however many subscribers share it.

    With `limit` (one int for all, or per subscriber id a mapping or a callable), each digest is
    cut to its first `limit` matches, as `Top` lists whose `total` counts all of them: a digest
    email shows only a few papers, and the rest need not be merged or combined."""
    digests: dict[int, list[Match]] = {}
    # Readers who share topics share combined matches, within this call only: a process that
    # keeps the index for later calls does not keep every combination ever made.
    combinations: dict[tuple, Match] = {}
    if limit is None:
        limit_of = None
    elif isinstance(limit, int):
        limit_of = lambda subscriber: limit  # noqa: E731
    elif isinstance(limit, Mapping):
        limit_of = limit.__getitem__
    else:
        limit_of = limit
    with paused_gc():
        _evaluate_all(index, set().union(*topics_by_subscriber.values()))
        for subscriber, topics in topics_by_subscriber.items():
            if limit_of is None:
                matches = _digest(index, topics, combinations)
            else:
                top = _top(index, topics, combinations, max(int(limit_of(subscriber)), 0))
                if top.total:
                    digests[subscriber] = top
                continue
            if matches:
                digests[subscriber] = matches
    return digests
