"""The list an email shows: a reader's topic matches ordered by topic score and their model,
papers like their "Less like this" pushed down, and a few confident suggestions no topic matched.
Trending: the edition's papers by upvotes, for a reader without topics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from operator import attrgetter

import numpy as np

from digest.matching.rank import Top
from digest.matching.results import Match
from digest.relevance.features import EditionFeatures
from digest.relevance.model import THRESHOLD_FLOOR, ReaderModel

# How much the model weighs against topic points (a topic in the title is 2, elsewhere 1): a
# candidate as close to a liked paper as liked papers are to each other (~0.3) moves about one
# topic point; a paper closest to a "Less like this" falls by as much.
MODEL_WEIGHT = 4.0
MAX_SUGGESTIONS = 3
_PAPER = attrgetter("paper")
# A match that rose says which liked paper it resembles only when the resemblance is one a reader
# would see (two papers of one field share this much); below, it rose on common words.
RESEMBLES_MIN = 0.1
# A paper much nearer to one the reader marked "Less like this" than to any they marked "More like
# this" is left out, not only pushed down: with fewer matches than places, pushed down is still
# shown. "Much nearer": half as similar again, and similar at all (a few hundredths is what two
# unrelated abstracts share). Measured on six graded readers (docs/relevance.md): from 1.35 to 2.5
# times, no relevant paper was lost on any of them; 1.2 began to lose some.
LEFT_OUT_RATIO = 1.5
LEFT_OUT_FLOOR = THRESHOLD_FLOOR


def trending(papers: Sequence, limit: int | None = None) -> Top:
    """The edition's papers by upvotes, most first, ties by id; `total` is every paper."""
    ordered = sorted(papers, key=lambda p: (-(p.upvotes or 0), p.id))
    cut = ordered if limit is None else ordered[:limit]
    return Top([Match(p, float(p.upvotes or 0), (), ()) for p in cut], len(papers))


def rerank(matches: Sequence[Match], total: int, features: EditionFeatures | None,
           model: ReaderModel | None, *, learn: bool, suggest: bool, limit: int) -> Top:
    """What to show, best first, at most `limit`, and how many there are in all.

    Without a model (no marks) or with learning off: exactly `matches[:limit]`, today's ranking.
    With one: each match's key is its topic score (for trending picks, its rank by upvotes scaled
    to [0, 1]) plus MODEL_WEIGHT times the model's score; a match that rose gets `resembles`, the
    title of the liked paper nearest to it; a match much nearer to a disliked paper than to any
    liked one (LEFT_OUT_RATIO) is left out. With `suggest`, up to MAX_SUGGESTIONS papers no topic
    matched join, each at least as similar to a liked paper as the reader's threshold."""
    if model is None or not learn or features is None or not features.papers:
        return Top(list(matches)[:limit], total)
    scores, like, nearest, dislike = model.scores(features)
    unwanted = _unwanted(like, dislike)
    position, by_object = features.position, features.object_position
    n = len(matches)
    ids = []  # of matches not among the candidates (by id); the others by row
    rows_seen: set[int] = set()
    keyed = []
    # Matches come best first; a match can gain at most MODEL_WEIGHT * the edition's best score,
    # so once the topic scores fall that far below the limit-th key so far, none of the rest can
    # be shown (most of a broad topic's matches are never looked at).
    best_gain = MODEL_WEIGHT * max(float(scores.max()), 0.0)
    floor = None
    looked = 0  # matches looked at (the rest cannot be shown)
    for rank_, match in enumerate(matches):
        trend = not match.topics and match.resembles is None
        base = (n - rank_) / n if trend else float(match.score)
        if floor is not None and base + best_gain < floor:
            break
        looked += 1
        # By identity first: the matches hold the edition's own Paper objects, and an ORM
        # object's id costs more to read than its identity.
        i = by_object.get(id(match.paper))
        if i is None:
            i = position.get(match.paper.id)
        if i is None:
            ids.append(match.paper.id)
        else:
            rows_seen.add(i)
            if unwanted[i]:
                continue
        s = float(scores[i]) if i is not None else 0.0
        keyed.append((base + MODEL_WEIGHT * s, rank_, match, i))
        if len(keyed) >= limit and (len(keyed) == limit or len(keyed) % 64 == 0):
            floor = sorted((k[0] for k in keyed), reverse=True)[limit - 1]
    suggestions = []
    threshold = model.threshold(features) if suggest else None
    if threshold is not None:
        taken = set(ids) | set(model.liked) | set(model.disliked)
        # The matches not looked at, by identity (the candidates are the same Paper objects as the
        # matches' in every caller): cheaper than reading each one's id.
        unread = set(map(id, map(_PAPER, matches[looked:])))
        eligible = np.flatnonzero((like >= threshold) & (scores > 0))
        # Most similar first; among equals, the edition's order (its papers come sorted by id).
        for i in eligible[np.argsort(-like[eligible], kind="stable")]:
            paper = features.papers[i]
            if i in rows_seen or id(paper) in unread or paper.id in taken:
                continue
            title = model.liked_titles[int(nearest[i])]
            suggestion = Match(paper, round(float(like[i]), 3), (), (), resembles=title)
            suggestions.append((MODEL_WEIGHT * float(scores[i]), n + len(suggestions), suggestion, i))
            if len(suggestions) == MAX_SUGGESTIONS:
                break
    keyed.sort(key=lambda k: (-k[0], k[1]))
    # Suggestions are few and confident: they take the last places rather than be cut.
    kept = keyed[: max(limit - len(suggestions), 0)] + suggestions[:limit]
    kept.sort(key=lambda k: (-k[0], k[1]))
    shown = []
    for new_rank, (_, old_rank, match, i) in enumerate(kept):
        if (old_rank < n and new_rank < old_rank and i is not None and scores[i] > 0 and like[i] >= RESEMBLES_MIN
                and nearest[i] >= 0):
            match = replace(match, resembles=model.liked_titles[int(nearest[i])])
        shown.append(match)
    return Top(shown, total - _left_out(matches, unwanted, features) + len(suggestions))


def _unwanted(like: np.ndarray, dislike: np.ndarray) -> np.ndarray:
    return (dislike >= LEFT_OUT_FLOOR) & (dislike > LEFT_OUT_RATIO * like)


def left_out(matches: Sequence[Match], features: EditionFeatures | None, model: ReaderModel | None, *,
             learn: bool) -> list[tuple[Match, str]]:
    """The matches `rerank` leaves out of this reader's list, each with the title of the "Less like
    this" paper it is nearest to: why a paper is missing from their digest."""
    if model is None or not learn or features is None or not features.papers or not model.disliked:
        return []
    _, like, _, dislike = model.scores(features)
    rows = {id(features.papers[i]): i for i in np.flatnonzero(_unwanted(like, dislike))}
    if not rows:
        return []
    nearest = model.nearest_disliked(features)
    return [(match, model.disliked_titles[int(nearest[rows[id(match.paper)]])])
            for match in matches if id(match.paper) in rows]


def left_out_reason(title: str) -> str:
    return f'much nearer a paper they marked "Less like this" than any they liked: {title}'


def _left_out(matches: Sequence[Match], unwanted: np.ndarray, features: EditionFeatures) -> int:
    """How many of the matches are left out, all of them counted (the loop above stops at those that
    cannot be shown): the digest's "N new papers" and "and N more" count what the reader can get."""
    rows = np.flatnonzero(unwanted)
    if not len(rows):
        return 0
    # By identity, as for `unread`: the candidates are the matches' own Paper objects in every caller.
    left_out = {id(features.papers[i]) for i in rows}
    return sum(map(left_out.__contains__, map(id, map(_PAPER, matches))))


def reason(match: Match) -> str:
    """Why a paper is in a reader's list, in the words a card uses."""
    if match.topics:
        words = ", ".join(match.matched) or ", ".join(match.topics)
        text = f"matched: {words}"
        return f"{text}; Like: {match.resembles}" if match.resembles else text
    if match.resembles:
        return f"Like: {match.resembles}"
    upvotes = match.paper.upvotes or 0
    return f"{upvotes} upvote{'s' if upvotes != 1 else ''}"
