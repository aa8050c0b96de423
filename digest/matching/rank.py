"""Rank an edition's papers for subscribers, and explain each match.

Digest order (stable, documented in docs/query-language.md):
  1. score, highest first: each of the subscriber's topics that matches the paper adds
     TITLE_WEIGHT if some of its words are in the title, else 1 (abstract, author or category);
  2. Hugging Face upvotes, most first;
  3. publication time, newest first (papers without one last);
  4. arXiv id, ascending.

For many subscribers the work is shared: each distinct topic is evaluated once per edition and
turned once into ranked single-topic matches; a subscriber's digest merges those, and only the
papers that several of their topics match get a combined Match (itself cached, since readers
who share topics share combinations).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from digest.matching.evaluate import Evidence, evaluate
from digest.matching.index import EditionIndex
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
    by_sort_key: dict[int, Match]  # sort key -> Match with this topic alone
    sort_key: dict[int, int]  # paper -> its sort key above
    ranked: list[Match]


def _weight(evidence: Evidence) -> int:
    return TITLE_WEIGHT if evidence and evidence[0][0] == TITLE else 1  # evidence is sorted by field


def _sort_key(index: EditionIndex, paper: int, score: int) -> int:
    # One int, so a digest sorts in C: higher score first, then the index's tie-break order.
    # Unique per paper within a digest because tiebreak ranks are unique and < len(index).
    return -score * len(index) + index.tiebreak[paper]


def _merge_spans(spans: list[Span]) -> tuple[Span, ...]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def _explain(index: EditionIndex, paper: int, evidences: Sequence[Evidence]):
    """The words exactly as the paper spells them, and their offsets in title and abstract."""
    spans: dict[int, list[Span]] = {}
    for evidence in evidences:
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
    by_sort_key: dict[int, Match] = {}
    sort_key: dict[int, int] = {}
    for paper, evidence in hits.items():
        score = _weight(evidence)
        matched, highlights = _explain(index, paper, (evidence,))
        key = _sort_key(index, paper, score)
        by_sort_key[key] = Match(index.papers[paper], float(score), (topic,), matched, highlights)
        sort_key[paper] = key
    ranked = [by_sort_key[key] for key in sorted(by_sort_key)]
    result = _TopicMatches(topic, hits, frozenset(hits), by_sort_key, sort_key, ranked)
    index.topic_cache[topic] = result
    return result


def _combined(index: EditionIndex, paper: int, topics: tuple[_TopicMatches, ...]) -> tuple[int, Match]:
    names = tuple(topic.topic for topic in topics)
    cached = index.combination_cache.get((paper, names))
    if cached is not None:
        return cached
    evidences = [topic.hits[paper] for topic in topics]
    score = sum(_weight(evidence) for evidence in evidences)
    matched, highlights = _explain(index, paper, evidences)
    result = (_sort_key(index, paper, score), Match(index.papers[paper], float(score), names, matched, highlights))
    index.combination_cache[(paper, names)] = result
    return result


def _digest(index: EditionIndex, topics: Sequence[str]) -> list[Match]:
    seen_names: set[str] = set()
    found: list[_TopicMatches] = []
    for topic in topics:
        if topic in seen_names:
            continue
        seen_names.add(topic)
        matches = _topic_matches(index, topic)
        if matches is not None and matches.papers:
            found.append(matches)
    if not found:
        return []
    if len(found) == 1:
        return list(found[0].ranked)
    seen: set[int] = set()
    several: set[int] = set()
    merged: dict[int, Match] = {}
    for matches in found:
        several |= seen & matches.papers
        seen |= matches.papers
        merged.update(matches.by_sort_key)
    for paper in several:
        sharing = tuple(matches for matches in found if paper in matches.papers)
        for matches in sharing:
            merged.pop(matches.sort_key[paper], None)
        key, match = _combined(index, paper, sharing)
        merged[key] = match
    return [merged[key] for key in sorted(merged)]


def rank(index: EditionIndex, topics: Sequence[str], limit: int | None = None) -> list[Match]:
    """One subscriber's digest: the edition's papers matching at least one topic, in digest order."""
    matches = _digest(index, topics)
    return matches if limit is None else matches[:limit]


def match_subscribers(index: EditionIndex, topics_by_subscriber: Mapping[int, Sequence[str]]) -> dict[int, list[Match]]:
    """Every subscriber's digest for this edition; subscribers with no match are absent. Each
    distinct topic is evaluated once, however many subscribers share it."""
    digests: dict[int, list[Match]] = {}
    for subscriber, topics in topics_by_subscriber.items():
        matches = _digest(index, topics)
        if matches:
            digests[subscriber] = matches
    return digests
