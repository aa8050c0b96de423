"""The list an email shows: a reader's topic matches ordered by topic score and their model,
papers like their "Less like this" pushed down, and a few confident suggestions no topic matched.
Trending: the edition's papers by upvotes, for a reader without topics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from digest.matching.rank import Top
from digest.matching.results import Match
from digest.relevance.features import EditionFeatures
from digest.relevance.model import ReaderModel

# How much the model weighs against topic points (a topic in the title is 2, elsewhere 1): a
# candidate as close to a liked paper as liked papers are to each other (~0.3) moves about one
# topic point; a paper closest to a "Less like this" falls by as much.
MODEL_WEIGHT = 4.0
MAX_SUGGESTIONS = 3
# A match that rose says which liked paper it resembles only when the resemblance is one a reader
# would see (two papers of one field share this much); below, it rose on common words.
RESEMBLES_MIN = 0.1


def trending(papers: Sequence, limit: int | None = None) -> Top:
    """The edition's papers by upvotes, most first, ties by id; `total` is every paper."""
    ordered = sorted(papers, key=lambda p: (-(p.upvotes or 0), p.id))
    cut = ordered if limit is None else ordered[:limit]
    return Top([Match(p, float(p.upvotes or 0), (), ()) for p in cut], len(papers))


def _is_trending(match: Match) -> bool:
    return not match.topics and match.resembles is None


def rerank(matches: Sequence[Match], total: int, features: EditionFeatures | None,
           model: ReaderModel | None, *, learn: bool, suggest: bool, limit: int) -> Top:
    """What to show, best first, at most `limit`, and how many there are in all.

    Without a model (no marks) or with learning off: exactly `matches[:limit]`, today's ranking.
    With one: each match's key is its topic score (for trending picks, its rank by upvotes scaled
    to [0, 1]) plus MODEL_WEIGHT times the model's score; a match that rose gets `resembles`, the
    title of the liked paper nearest to it. With `suggest`, up to MAX_SUGGESTIONS papers no topic
    matched join, each at least as similar to a liked paper as the reader's threshold."""
    if model is None or not learn or features is None or not features.papers:
        return Top(list(matches)[:limit], total)
    scores, like, nearest = model.scores(features)
    position = features.position
    n = len(matches)
    keyed = []
    for rank_, match in enumerate(matches):
        i = position.get(match.paper.id)
        s = float(scores[i]) if i is not None else 0.0
        base = (n - rank_) / n if _is_trending(match) else float(match.score)
        keyed.append((base + MODEL_WEIGHT * s, rank_, match, i))
    suggestions = []
    threshold = model.threshold(features) if suggest else None
    if threshold is not None:
        taken = {match.paper.id for match in matches} | set(model.liked) | set(model.disliked)
        eligible = np.flatnonzero((like >= threshold) & (scores > 0))
        for i in sorted(eligible, key=lambda i: (-float(like[i]), features.papers[i].id)):
            paper = features.papers[i]
            if paper.id in taken:
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
    return Top(shown, total + len(suggestions))


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
