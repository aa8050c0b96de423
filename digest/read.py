"""The read side: what pages and commands show without changing anything. The landing page's
sample of the newest edition, the settings page's live preview, `digest search`, `digest stats`.
Routes and commands call one function here each."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.delivery import reader_model, topic_matches
from digest.editions import latest_edition
from digest.errors import DigestError
from digest.matching import EditionIndex, Match, PreviewTimeout, parse_query, rank
from digest.models import Delivery, DeliveryStatus, Paper, Subscriber, SubscriberStatus, Suppression, Topic
from digest.relevance import EditionFeatures, left_out, reason, rerank
from digest.subscriptions import DEFAULT_MAX_PAPERS, clean_topics, page_limit


def edition_sample(session: Session, limit: int = 6) -> tuple[date | None, list[Paper]]:
    """The newest edition's most upvoted papers, for the landing page."""
    edition = latest_edition(session)
    if edition is None:
        return None, []
    papers = session.scalars(
        select(Paper).where(Paper.edition == edition).order_by(Paper.upvotes.desc(), Paper.id).limit(limit)
    ).all()
    return edition, list(papers)


# Seconds of CPU time a preview's matching may take: a reader's topics take a few milliseconds; the
# topics' limits (matching.SAVED_TOPIC_LIMITS) keep most queries below it and this bounds the rest,
# so that the worst preview costs a few times a plain one (bench/bench_preview.py).
PREVIEW_BUDGET = 0.025


@dataclass
class TopicPreview:
    """"With these topics, the last edition would have sent you these papers"."""

    edition: date | None
    papers: list[Paper]
    total: int  # all matches; `papers` is cut at the subscriber's limit
    too_slow: bool = False  # the preview ran out of its budget: nothing to show (the digest is unaffected)
    # Why each paper is there, in `papers`' order: "matched: ...", "Like: <title>", "N upvotes".
    reasons: list[str] = field(default_factory=list)


def preview_topics(session: Session, topics: list[str] | str, limit=DEFAULT_MAX_PAPERS,
                   budget: float = PREVIEW_BUDGET, subscriber: Subscriber | None = None) -> TopicPreview:
    """The papers the newest edition would have sent for these topics (TopicErrors if one is bad),
    computed within `budget` seconds. `limit` may come straight from a request: it is kept within
    the papers-per-email range. No topics: the edition's trending papers. With `subscriber` (the
    reader whose settings page this is), in their own order: their model and suggestions, as
    their digest would have them."""
    # No topics at all is a choice (the day's trending papers), not a mistake to report here.
    blank = not (topics.strip() if isinstance(topics, str) else any(str(t).strip() for t in topics))
    cleaned = [] if blank else clean_topics(topics)
    edition = latest_edition(session)
    if edition is None:
        return TopicPreview(None, [], 0)
    try:
        shown, total = topic_matches(session, cleaned, edition, page_limit(limit, DEFAULT_MAX_PAPERS),
                                     budget=budget, subscriber=subscriber)
    except PreviewTimeout:
        return TopicPreview(edition, [], 0, too_slow=True)
    return TopicPreview(edition, [match.paper for match in shown], total, reasons=[reason(m) for m in shown])


class Found(list):
    """A search's matches, in order; `left_out`: (match, why) for each match the reader's "Less like
    this" keeps out of their digest (a search `--for` a reader only)."""

    def __init__(self, matches, left_out: list[tuple[Match, str]] | None = None) -> None:
        super().__init__(matches)
        self.left_out = left_out or []


def search(session: Session, query: str, edition: date | None = None, limit: int | None = None,
           reader: str | None = None) -> Found:
    """Every paper of the store (or of one edition) that the query matches, in digest order.
    Raises QueryError before touching the store when the query does not parse.

    With `reader` (an email address), in that reader's own order: their model (when they have
    marks and learning on) reorders the matches and says which liked paper each one resembles
    (`reason(match)` gives the card's words), and `left_out` says which matches their marks keep
    out of their digest and why."""
    topic = parse_query(query).text
    subscriber = None
    if reader is not None:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == reader.strip().lower()))
        if subscriber is None:
            raise DigestError(f"no subscriber with the address {reader!r} (see `digest subscribe`)")
    statement = select(Paper).order_by(Paper.id)
    if edition is not None:
        statement = statement.where(Paper.edition == edition)
    papers = session.scalars(statement).all()
    matches = rank(EditionIndex.build(papers), [topic])
    model = reader_model(session, subscriber) if subscriber is not None else None
    if model is None:
        return Found(matches if limit is None else matches[:limit])
    # The candidates are the matches themselves: a search shows what the query matched, ordered
    # as this reader's digest would order it, not suggestions beyond it.
    features = EditionFeatures.build([match.paper for match in matches])
    return Found(rerank(matches, len(matches), features, model, learn=True, suggest=False,
                        limit=len(matches) if limit is None else limit),
                 left_out(matches, features, model, learn=True))


def stats(session: Session) -> dict:
    by_status = dict(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    top = session.execute(
        select(Topic.query, func.count()).group_by(Topic.query).order_by(func.count().desc(), Topic.query).limit(10)
    ).all()
    deliveries = dict(session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    return {
        "subscribers": {s.value: by_status.get(s, 0) for s in SubscriberStatus},
        "topics": session.scalar(select(func.count()).select_from(Topic)) or 0,
        "distinct_topics": session.scalar(select(func.count(func.distinct(Topic.query)))) or 0,
        "top_topics": [{"topic": q, "subscribers": n} for q, n in top],
        "deliveries": {s.value: deliveries.get(s, 0) for s in DeliveryStatus},
        "suppressed": session.scalar(select(func.count()).select_from(Suppression)) or 0,
        "papers": session.scalar(select(func.count()).select_from(Paper)) or 0,
    }
