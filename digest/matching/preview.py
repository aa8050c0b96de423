"""The first papers of one reader's digest for topics they are typing: the settings page's preview.

The same papers, scores, order and total as rank's digests (a property test holds them equal),
computed for what a preview shows, a list of titles: each topic's matches by set algebra
(evaluate.matched_and_titled), no explanations, no evidence. A topic the edition has already
evaluated for a digest is read from the edition's caches; anything new is kept only in the
request's overlay of the index, and thrown away with it. A deadline bounds the work whatever the
query: past it, PreviewTimeout.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Collection, Sequence

from digest.errors import DigestError
from digest.matching.evaluate import matched_and_titled
from digest.matching.index import EditionIndex
from digest.matching.query import QueryError, parse_query
from digest.matching.rank import TITLE_WEIGHT, Top
from digest.matching.results import Match


class PreviewTimeout(DigestError):
    """The preview's topics needed more work than a preview may take."""


def _topic_sets(index: EditionIndex, topic: str, check) -> tuple[Collection[int], Collection[int]]:
    """The papers a topic matches, and those it matches in the title (TITLE_WEIGHT, not 1)."""
    evaluated = index.topic_cache.get(topic)
    if evaluated is not None:  # a digest of this edition already matched this topic
        return evaluated.papers, [p for p, match in evaluated.match_of.items() if match.score == TITLE_WEIGHT]
    if topic in index.topic_cache:  # evaluated for a digest: matches nothing
        return (), ()
    try:
        query = parse_query(topic)
    except QueryError:
        return (), ()  # as rank: a topic that does not parse is skipped, the others count
    return matched_and_titled(index, query, check)


def preview(index: EditionIndex, topics: Sequence[str], limit: int, budget: float | None = None) -> Top:
    """The first `limit` matches of the digest `topics` would make (`total`: all of them), each a
    Match without matched words or highlights. `index` is best an overlay (EditionIndex.overlay).
    `budget`: seconds of this thread's CPU time, past which PreviewTimeout is raised (waiting for
    other threads does not count: a busy process does not time out a cheap preview)."""
    stop_at = time.thread_time() + budget if budget is not None else None

    def check() -> None:
        if stop_at is not None and time.thread_time() > stop_at:
            raise PreviewTimeout("these topics take too long to preview")

    scores: Counter[int] = Counter()  # a topic adds 1 to each paper it matches, TITLE_WEIGHT in the title
    found: list[tuple[str, Collection[int]]] = []
    for topic in dict.fromkeys(topics):
        check()
        matched, titled = _topic_sets(index, topic, check)
        scores.update(matched)
        for _ in range(TITLE_WEIGHT - 1):  # a title match weighs TITLE_WEIGHT, any other 1
            scores.update(titled)
        found.append((topic, matched))
    tiebreak = index.tiebreak
    first = heapq.nsmallest(max(limit, 0), scores, key=lambda paper: (-scores[paper], tiebreak[paper]))
    return Top([Match(index.papers[p], float(scores[p]), tuple(t for t, matched in found if p in matched), (), {})
                for p in first], len(scores))
