"""Building digests: load the claimed jobs, match them in bulk, compose each message. Never sends.

There is one way to compose a digest. The batch path builds many at once (`build_batch`); the
views of one subscriber (`preview_digest`, the "view in browser" page, the settings preview) are
the same bulk path called with one job, as zulip's `get_digest_context(user)` is
`bulk_get_digest_context([user])[user.id]`: what a reader previews is what they are sent.

Per process the composer keeps one match index per edition (`EditionCache`) and one renderer per
edition, rebuilt only when the edition's papers change; per subscriber only matching their topics
against the cached index, a few string joins and the headers remain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.delivery import ledger
from digest.delivery.ledger import SessionFactory
from digest.delivery.windows import window
from digest.editions import Edition, EditionCache, edition_paper_count, latest_edition
from digest.errors import ConfigError, DigestError
from digest.mail import (
    DigestLinks,
    EditionRenderer,
    HeaderError,
    RenderedEmail,
    feedback_links,
    make_message_id,
    message_bytes,
    settings_url,
    unsubscribe_url,
    view_url,
)
from digest.matching import Match, match_subscribers, preview
from digest.matching.rank import Top
from digest.models import Delivery, Frequency, Subscriber, SubscriberStatus, Topic
from digest.delivery.learning import ReaderModels
from digest.relevance import ReaderModel, Window, rerank, trending

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Recipient:
    """What building one digest needs of a subscriber, read as plain rows (no ORM identity map:
    a batch only reads them). `topics` are the query strings, in the subscriber's order."""

    id: int
    email: str
    status: SubscriberStatus
    link_secret: str
    max_papers: int
    notify_empty: bool
    frequency: Frequency
    confirmed_at: datetime | None
    created_at: datetime | None
    topics: list[str] = field(default_factory=list)
    # The reader's two choices about relevance, and the version of their marks (bumped on every
    # change: a model fitted for this version is still theirs).
    learn_from_feedback: bool = True
    suggest_beyond_topics: bool = True
    feedback_version: int = 0

    @property
    def learns(self) -> bool:
        """Whether this reader's digest depends on their marks at all."""
        return bool(self.learn_from_feedback and self.feedback_version)

    @classmethod
    def of(cls, subscriber: Subscriber, topics: Sequence[str] | None = None) -> Recipient:
        """A subscriber row as a recipient; `topics` instead of theirs for a preview of new ones."""
        return cls(
            subscriber.id, subscriber.email, subscriber.status, subscriber.link_secret, subscriber.max_papers,
            subscriber.notify_empty, subscriber.frequency, subscriber.confirmed_at, subscriber.created_at,
            list(topics) if topics is not None else [t.query for t in subscriber.topics],
            _on(subscriber.learn_from_feedback), _on(subscriber.suggest_beyond_topics),
            subscriber.feedback_version or 0,
        )


def _on(choice: bool | None) -> bool:
    return True if choice is None else bool(choice)  # a row not yet flushed: the column's default


@dataclass
class Job:
    delivery_id: int  # 0 for a view of one subscriber that no delivery row stands behind
    edition: date
    editions: tuple[date, ...]  # the window, oldest first
    subscriber: Recipient
    created_at: datetime | None = None
    attempts: int = 1


@dataclass
class DigestContext:
    """One subscriber's digest before rendering: the papers shown, best first, how many matched
    in all, and the links the email carries."""

    job: Job
    shown: list[Match]
    total: int
    links: DigestLinks


@dataclass
class Composed:
    recipient: str
    data: bytes
    message_id: str
    paper_ids: list[str]


class DigestComposer:
    """Per process: the editions' match indexes and one renderer per edition."""

    def __init__(self, settings: Settings | None, cache: EditionCache | None = None) -> None:
        self.settings = settings
        self.cache = cache or EditionCache()
        self._renderers: dict[date, tuple[tuple, EditionRenderer]] = {}
        # The web serves pages from several threads, and every composer of a process shares the
        # editions' indexes: matching and the renderers' caches are pure Python, so one lock for
        # all costs no parallelism.
        self.lock = self.cache.lock
        # Relevance, per process: the readers' fitted models and each edition's text features.
        self.learning = ReaderModels(self.cache)

    def editions(self, session: Session, editions) -> dict[date, Edition]:
        return self.cache.get(session, editions)

    def renderer(self, edition: Edition | None, day: date) -> EditionRenderer:
        version = edition.version if edition is not None else None
        kept = self._renderers.get(day)
        if kept is None or kept[0] != version:
            kept = self._renderers[day] = (version, EditionRenderer(self.settings, day))
            for stale in [d for d in self._renderers if self.cache.cached(d) is None and d != day]:
                del self._renderers[stale]  # its edition left the cache
        return kept[1]

    def match(self, session: Session, jobs: Sequence[Job], full: bool = False) -> dict[int, Top]:
        """Each job's digest across its window, best first, cut to what the email shows (all of
        them with `full`), `total` counting every paper it could show. Matching ranks within an
        edition; across editions the newer edition's papers come first among equal scores.
        A reader without topics gets the window's papers by upvotes (trending); a reader who
        learns from their marks gets them reranked by their model (digest.relevance.rerank)."""
        data = self.editions(session, (e for job in jobs for e in job.editions))
        models = self.learning.of(session, [job.subscriber for job in jobs])
        learning = {job.delivery_id for job in jobs if models.get(job.subscriber.id) is not None}
        # A digest shows max_papers: each edition's first max_papers hold the window's first
        # max_papers (the merge below keeps each edition's order), `total` counts the rest. A
        # reader's model may lift any match: theirs are not cut before it has seen them all.
        most = max((len(edition.papers) for edition in data.values()), default=1)
        cut = {job.delivery_id: most if full else max(job.subscriber.max_papers, 1) for job in jobs}
        shown = {job.delivery_id: most if job.delivery_id in learning else max(job.subscriber.max_papers, 1)
                 for job in jobs}
        if full:
            shown = {key: most for key in shown}
        per_job: dict[int, Top] = {job.delivery_id: Top() for job in jobs}
        sources: dict[int, int] = {job.delivery_id: 0 for job in jobs}  # editions that matched, per job
        for day in sorted(data, reverse=True):
            queries = {job.delivery_id: job.subscriber.topics for job in jobs if day in job.editions}
            if not queries or not data[day].papers:
                continue
            for delivery_id, matches in match_subscribers(data[day].index, queries, limit=shown).items():
                if matches.total:
                    per_job[delivery_id].extend(matches)
                    per_job[delivery_id].total += matches.total
                    sources[delivery_id] += 1
        for job in jobs:
            if sources[job.delivery_id] > 1:  # one edition's matches come ranked already
                per_job[job.delivery_id].sort(key=lambda m: -m.score)  # stable among equals
        for job in jobs:
            if not job.subscriber.topics:
                papers = [paper for day in sorted(data, reverse=True) if day in job.editions for paper in data[day].papers]
                per_job[job.delivery_id] = trending(papers, None if job.delivery_id in learning else cut[job.delivery_id])
        # Each marked paper of the batch is compared with each edition once, in one product per
        # edition (then every reader's scores are rows of it).
        for day in {day for job in jobs if job.delivery_id in learning for day in job.editions if day in data}:
            if data[day].papers:
                self.learning.features(data[day]).prepare(
                    [models[job.subscriber.id] for job in jobs if job.delivery_id in learning and day in job.editions])
        for job in jobs:
            if job.delivery_id in learning:
                subscriber = job.subscriber
                days = [day for day in sorted(data) if day in job.editions and data[day].papers]
                parts = [self.learning.features(data[day]) for day in days]
                candidates = parts[0] if len(parts) == 1 else Window(parts) if parts else None
                matches = per_job[job.delivery_id]
                # No suggestions for a reader without topics: their whole window is already a
                # candidate (trending), which the model reorders.
                per_job[job.delivery_id] = rerank(
                    matches, matches.total, candidates, models[subscriber.id],
                    learn=True, suggest=subscriber.suggest_beyond_topics and bool(subscriber.topics),
                    limit=cut[job.delivery_id],
                )
        return per_job

    def context(self, job: Job, matches: list, full: bool = False) -> DigestContext:
        subscriber, settings = job.subscriber, self.settings
        shown = list(matches) if full else list(matches[: max(subscriber.max_papers, 1)])
        total = getattr(matches, "total", len(matches))  # match() cuts digests to what is shown
        view = view_url(subscriber, job.edition, settings)
        links = DigestLinks(
            settings_url=settings_url(subscriber, settings),
            unsubscribe_url=unsubscribe_url(subscriber, settings),
            view_url=view,
            more_url=view if total > len(shown) and not full else None,
            feedback=feedback_links(subscriber, settings),  # each card's two links, signed for this reader
        )
        return DigestContext(job, shown, total, links)

    def render(self, context: DigestContext, empty_note: bool) -> RenderedEmail | None:
        """The email of a context; when nothing matched, the short note if `empty_note`, else None."""
        job = context.job
        renderer = self.renderer(self.cache.cached(job.edition), job.edition)
        email, topics = job.subscriber.email, job.subscriber.topics
        if context.shown:
            return renderer.render_digest(email, topics, context.shown, context.total, context.links)
        return renderer.render_empty(email, topics, context.links) if empty_note else None

    def compose(self, job: Job, matches: list) -> Composed | None:
        """One subscriber's message, or None when nothing matched and they asked not to be told."""
        context = self.context(job, matches)
        rendered = self.render(context, empty_note=job.subscriber.notify_empty)
        if rendered is None:
            return None
        subscriber = job.subscriber
        message_id = make_message_id(subscriber.id, job.edition, self.settings)
        data = message_bytes(rendered, subscriber.email, self.settings, message_id=message_id,
                             unsubscribe_url=context.links.unsubscribe_url)
        return Composed(subscriber.email, data, message_id, [m.paper.id for m in context.shown])


_composers: dict[int, DigestComposer] = {}
_editions = EditionCache()  # one per process, shared by every composer in it


def composer_for(settings: Settings) -> DigestComposer:
    """The process's composer (its caches outlive one batch: a worker serves many)."""
    key = id(settings)
    if key not in _composers:
        _composers.clear()
        _composers[key] = DigestComposer(settings, _editions)
    return _composers[key]


_matching = DigestComposer(None, _editions)


def composer_for_matching() -> DigestComposer:
    """A composer that only matches (no settings, so no links or messages)."""
    return _matching


# --------------------------------------------------------------------------- the batch path


def load_jobs(session: Session, claimed: Sequence[int]) -> tuple[list[Job], list[tuple[int, str]]]:
    """The claimed rows as jobs (subscriber, topics, window), in three queries for the batch;
    and the rows to skip, with the reason."""
    deliveries = _claimed_rows(session, claimed)
    subscribers = _recipients(session, sorted({d.subscriber_id for d in deliveries if d.subscriber_id is not None}))
    suppressed = ledger.suppressed(session, (s.email for s in subscribers.values()))
    jobs: list[Job] = []
    skipped: list[tuple[int, str]] = []
    for delivery in deliveries:
        subscriber = subscribers.get(delivery.subscriber_id)
        if subscriber is None or subscriber.status != SubscriberStatus.active:
            skipped.append((delivery.id, "no longer subscribed"))
        elif subscriber.email in suppressed:
            skipped.append((delivery.id, "suppressed"))
        else:
            editions = window(subscriber, delivery.edition, delivery.previous)
            jobs.append(Job(delivery.id, delivery.edition, editions, subscriber, delivery.created_at, delivery.attempts))
    return jobs, skipped


def _claimed_rows(session: Session, claimed: Sequence[int]) -> list:
    # Each row's window starts after the newest earlier row of the same subscriber: a correlated
    # subquery, one probe of the (subscriber_id, edition) index per row, whatever the planner's
    # statistics say about a table that just grew by an edition's rows (a join here was planned
    # as a scan of every row of the edition, per batch).
    earlier = Delivery.__table__.alias("earlier")
    previous_edition = (
        select(func.max(earlier.c.edition))
        .where(earlier.c.subscriber_id == Delivery.subscriber_id, earlier.c.edition < Delivery.edition)
        .scalar_subquery()
        .label("previous")
    )
    return session.execute(
        select(Delivery.id, Delivery.subscriber_id, Delivery.edition, Delivery.created_at, Delivery.attempts,
               previous_edition)
        .where(ledger.among(session, Delivery.id, claimed, Integer))
        .order_by(Delivery.id)
    ).all()


def _recipients(session: Session, subscriber_ids: list[int]) -> dict[int, Recipient]:
    recipients: dict[int, Recipient] = {}
    if not subscriber_ids:
        return recipients
    for row in session.execute(
        select(
            Subscriber.id, Subscriber.email, Subscriber.status, Subscriber.link_secret, Subscriber.max_papers,
            Subscriber.notify_empty, Subscriber.frequency, Subscriber.confirmed_at, Subscriber.created_at,
            Subscriber.learn_from_feedback, Subscriber.suggest_beyond_topics, Subscriber.feedback_version,
        ).where(ledger.among(session, Subscriber.id, subscriber_ids, Integer))
    ):
        *plain, learn, suggest, version = row
        recipients[row.id] = Recipient(*plain, learn_from_feedback=_on(learn), suggest_beyond_topics=_on(suggest),
                                       feedback_version=version or 0)
    for subscriber_id, query in session.execute(
        select(Topic.subscriber_id, Topic.query)
        .where(ledger.among(session, Topic.subscriber_id, subscriber_ids, Integer))
        .order_by(Topic.subscriber_id, Topic.position, Topic.id)
    ):
        recipients[subscriber_id].topics.append(query)
    return recipients


@dataclass(frozen=True)
class BuildFailure:
    """Why one digest could not be built. `final` only when the subscriber's own data is what
    cannot go into a message (their address in a header): anything else, a bug or a passing
    fault, is tried again later."""

    reason: str
    final: bool = False


@dataclass
class Built:
    """A claimed batch, built: rows to skip (with the reason), and per job its message, None
    (nothing matched, not asked to be told) or why building it failed."""

    skipped: list[tuple[int, str]]
    built: list[tuple[Job, Composed | None | BuildFailure]]


def build_batch(factory: SessionFactory, settings: Settings, claimed: Sequence[int],
                composer: DigestComposer | None = None) -> Built:
    """Load, match and compose a claimed batch (no sending, no writing)."""
    composer = composer or composer_for(settings)
    with factory() as session:
        jobs, skipped = load_jobs(session, claimed)
        matches = composer.match(session, jobs) if jobs else {}
    built: list[tuple[Job, Composed | None | BuildFailure]] = []
    for job in jobs:
        try:
            built.append((job, composer.compose(job, matches.get(job.delivery_id, []))))
        except ConfigError:
            raise  # the operator's to fix: the whole batch goes back to pending, no row fails
        except HeaderError as exc:
            built.append((job, BuildFailure(f"cannot build: {exc}", final=True)))
        except Exception as exc:  # one bad digest must not stop the batch
            log.exception("could not build delivery %d for %s", job.delivery_id, job.subscriber.email)
            built.append((job, BuildFailure(f"build failed: {exc!r}")))
    return Built(skipped, built)


# --------------------------------------------------------------------------- one subscriber


def digest_context(session: Session, composer: DigestComposer, job: Job, full: bool = False) -> DigestContext:
    """The batch path for one job: what `build_batch` would compose for it."""
    with composer.lock:
        return composer.context(job, composer.match(session, [job], full)[job.delivery_id], full)


def _view(subscriber: Subscriber | Recipient, edition: date, topics: Sequence[str] | None = None) -> Job:
    recipient = subscriber if isinstance(subscriber, Recipient) else Recipient.of(subscriber, topics)
    return Job(0, edition, (edition,), recipient)


@dataclass(frozen=True)
class DigestPreview:
    rendered: RenderedEmail
    edition: date
    matched: int  # how many papers matched in all
    shown: int  # how many cards the email carries (the subscriber's limit)


def preview_digest(session: Session, settings: Settings, email: str, edition: date | None = None) -> DigestPreview:
    """What `email` would receive for `edition` (default: the newest edition in the store), built
    the way delivery builds it. When nothing matched, the "nothing matched" note, whatever the
    subscriber chose about it."""
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))
    if subscriber is None:
        raise DigestError(f"no subscriber with the address {email!r} (see `digest subscribe`)")
    if edition is None:
        edition = latest_edition(session)
        if edition is None:
            raise DigestError("no papers in the store yet: run `digest fetch` first")
    if not edition_paper_count(session, edition):
        raise DigestError(f"no papers in the edition of {edition.isoformat()}")
    composer = composer_for(settings)
    context = digest_context(session, composer, _view(subscriber, edition))
    with composer.lock:
        rendered = composer.render(context, empty_note=True)
    return DigestPreview(rendered, edition, context.total, len(context.shown))


def edition_page(session: Session, settings: Settings, subscriber: Subscriber, edition: date) -> str:
    """The page behind "view in browser" and "and N more": the subscriber's digest of one
    edition with every match, no card limit and no size cap. A whole HTML document."""
    composer = composer_for(settings)
    context = digest_context(session, composer, _view(subscriber, edition), full=True)
    with composer.lock:
        return composer.renderer(composer.cache.cached(edition), edition).render_page(
            subscriber.email, context.job.subscriber.topics, context.shown, context.links
        )


def topic_matches(session: Session, topics: Sequence[str], edition: date, limit: int,
                  budget: float | None = None, subscriber: Subscriber | None = None) -> tuple[list[Match], int]:
    """What `topics` (typed, not yet saved) would send from `edition`: the first `limit` matches
    and how many there are in all, in digest order (matching.preview: the same papers and order
    as the digest, without the explanations a list of titles does not show, and without keeping
    anything in the edition's caches). PreviewTimeout past `budget` seconds of CPU time.

    No topics: the edition's trending papers. With `subscriber` (the reader previewing their
    own settings), their model reorders the list and adds their suggestions, as their digest
    would; `resembles` says which liked paper a match is like."""
    composer = composer_for_matching()
    recipient = Recipient.of(subscriber, topics) if subscriber is not None else None
    model = None
    if recipient is not None and recipient.learns:
        model = composer.learning.of(session, [recipient]).get(recipient.id)
    with composer.lock:
        data = composer.editions(session, [edition]).get(edition)
        if data is None or not data.papers:
            return [], 0
        if not topics:
            top = trending(data.papers, None if model is not None else limit)
        else:
            top = preview(data.index.overlay(), list(topics), len(data.papers) if model is not None else limit, budget)
        if model is not None:
            top = rerank(top, top.total, composer.learning.features(data), model, learn=True,
                         suggest=recipient.suggest_beyond_topics and bool(topics), limit=limit)
    return list(top), top.total


def reader_model(session: Session, subscriber: Subscriber | Recipient) -> ReaderModel | None:
    """A reader's model as their digest uses it (None: no marks, or learning off): for the views
    of one reader (`digest search --for`)."""
    recipient = subscriber if isinstance(subscriber, Recipient) else Recipient.of(subscriber)
    if not recipient.learns:
        return None
    return composer_for_matching().learning.of(session, [recipient]).get(recipient.id)
