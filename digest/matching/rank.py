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
up. Only papers that several of their topics match get a combined Match (cached too: readers
who share topics share combinations). Overlaps are found with one bit mask per topic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from digest.matching.evaluate import Evidence, evaluate
from digest.matching.index import EditionIndex, paused_gc
from digest.matching.query import ABSTRACT, AUTHOR, CATEGORY, TITLE, QueryError, parse_query
from digest.matching.results import Match, Span

log = logging.getLogger(__name__)

TITLE_WEIGHT = 2
_FIELD_KEYS = {TITLE: "title", ABSTRACT: "abstract"}
_WORD_ORDER = (TITLE, ABSTRACT, AUTHOR, CATEGORY)


@dataclass
class _TopicMatches:
    """One topic's matches in one edition, as a subscriber with only this topic would get them."""

    topic: str
    hits: dict[int, Evidence]  # paper -> evidence
    papers: frozenset[int]
    mask: int  # bit n set: paper n matches
    keys: tuple[int, ...]  # edition-wide sort keys of this topic's single-topic matches
    key_of: dict[int, int]  # paper -> its key above
    ranked: list[Match]


_TOPIC_BITS = 32  # low bits of a sort key: the topic's (or combination's) number in the edition
_COMBINATIONS_FROM = 1 << 31


def _weight(evidence: Evidence) -> int:
    return TITLE_WEIGHT if evidence and evidence[0][0] == TITLE else 1  # evidence is sorted by field


def _sort_key(index: EditionIndex, paper: int, score: int, topic_number: int = 0) -> int:
    # One int, so that digests sort in C: higher score first, then the index's tie-break order
    # (unique per paper, < len(index)), then the topic's number so that keys are unique edition-wide.
    return ((-score * len(index) + index.tiebreak[paper]) << _TOPIC_BITS) | topic_number


def _merge_spans(spans: list[Span]) -> tuple[Span, ...]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def _explain(index: EditionIndex, paper: int, evidence: Evidence):
    """The words exactly as the paper spells them, and their offsets in title and abstract."""
    spans: dict[int, list[Span]] = {}
    for field, first, last in evidence:
        spans.setdefault(field, []).append(index.span(field, paper, first, last))
    words: list[str] = []
    highlights: dict[str, tuple[Span, ...]] = {"title": (), "abstract": ()}
    for field in _WORD_ORDER:
        if field not in spans:
            continue
        merged = _merge_spans(spans[field])
        if field in _FIELD_KEYS:
            highlights[_FIELD_KEYS[field]] = merged
        text = index.texts[field][paper]
        for start, end in merged:
            word = text[start:end]
            if word not in words:
                words.append(word)
    return tuple(words), highlights


def _topic_matches(index: EditionIndex, topic: str) -> _TopicMatches | None:
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
    number = len(index.topic_cache)
    singles = index.matches_by_key
    key_of: dict[int, int] = {}
    mask = 0
    for paper, evidence in hits.items():
        score = _weight(evidence)
        matched, highlights = _explain(index, paper, evidence)
        key = key_of[paper] = _sort_key(index, paper, score, number)
        singles[key] = Match(index.papers[paper], float(score), (topic,), matched, highlights)
        mask |= 1 << paper
    keys = tuple(sorted(key_of.values()))
    ranked = [singles[key] for key in keys]
    result = _TopicMatches(topic, hits, frozenset(hits), mask, keys, key_of, ranked)
    index.topic_cache[topic] = result
    return result


def _combined(index: EditionIndex, paper: int, topics: list[_TopicMatches]) -> int:
    """One paper that several of a subscriber's topics match: scores add up, words and highlights
    are the union of each topic's (words in topic order, then as they stand in the paper)."""
    names = tuple(topic.topic for topic in topics)
    cached = index.combination_cache.get((paper, names))
    if cached is not None:
        return cached
    by_key = index.matches_by_key
    singles = [by_key[topic.key_of[paper]] for topic in topics]
    score = sum(single.score for single in singles)
    matched = tuple(dict.fromkeys(chain.from_iterable(single.matched for single in singles)))
    highlights = {}
    for field in ("title", "abstract"):
        spans = [single.highlights[field] for single in singles if single.highlights.get(field)]
        if len(spans) > 1:
            highlights[field] = _merge_spans(list(chain.from_iterable(spans)))
        else:
            highlights[field] = spans[0] if spans else ()
    # Combinations are numbered above every topic, so their keys never collide with anything.
    key = _sort_key(index, paper, int(score), _COMBINATIONS_FROM + len(index.combination_cache))
    match = index.matches_by_key[key] = Match(index.papers[paper], score, names, matched, highlights)
    index.combination_cache[(paper, names)] = key
    return key


_UNSEEN = object()


def _digest(index: EditionIndex, topics: Sequence[str]) -> list[Match]:
    # This runs once per subscriber: it only merges what was computed once per topic, in C where
    # it can (concatenating and sorting ints, big-int masks, dict lookups through map).
    cache = index.topic_cache
    found: list[_TopicMatches] = []
    for topic in dict.fromkeys(topics):
        matches = cache.get(topic, _UNSEEN)
        if matches is _UNSEEN:
            matches = _topic_matches(index, topic)
        if matches is not None and matches.papers:
            found.append(matches)  # type: ignore[arg-type]
    if not found:
        return []
    if len(found) == 1:
        return found[0].ranked.copy()
    seen = several = 0
    for matches in found:
        several |= seen & matches.mask
        seen |= matches.mask
    if not several:
        return list(map(index.matches_by_key.__getitem__, sorted(chain.from_iterable(m.keys for m in found))))
    keys = set(chain.from_iterable(matches.keys for matches in found))
    while several:
        lowest = several & -several
        paper = lowest.bit_length() - 1
        several ^= lowest
        sharing = [matches for matches in found if matches.mask & lowest]
        keys.difference_update([matches.key_of[paper] for matches in sharing])
        keys.add(_combined(index, paper, sharing))
    return list(map(index.matches_by_key.__getitem__, sorted(keys)))


def rank(index: EditionIndex, topics: Sequence[str], limit: int | None = None) -> list[Match]:
    """One subscriber's digest: the edition's papers matching at least one topic, in digest order."""
    matches = _digest(index, topics)
    return matches if limit is None else matches[:limit]


def match_subscribers(index: EditionIndex, topics_by_subscriber: Mapping[int, Sequence[str]]) -> dict[int, list[Match]]:
    """Every subscriber's digest for this edition; subscribers with no match are absent. Each
    distinct topic is evaluated once, however many subscribers share it."""
    digests: dict[int, list[Match]] = {}
    with paused_gc():
        for subscriber, topics in topics_by_subscriber.items():
            matches = _digest(index, topics)
            if matches:
                digests[subscriber] = matches
    return digests
