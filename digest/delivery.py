"""Who is due, claim, build, send, record, retry, bounce, suppress. See docs/delivery.md.

Three steps, the same for Celery and for `digest send` (one process):

1. `dispatch`: one keyset-paged query picks active subscribers whose `next_due_at` has come; for
   each page, one transaction creates their delivery rows (unique subscriber + edition, so two
   dispatch runs never make two) and advances `next_due_at`; after the commit, the new row ids
   go to `enqueue` in chunks of `batch_size`. It also re-enqueues rows whose retry time has come
   and rows stuck in `sending` longer than `sending_timeout` (their worker died).
2. `send_batch(ids)`: claims the rows with one conditional UPDATE (pending, or sending and stale:
   two workers never hold the same row), loads subscribers and topics in bulk, matches them
   against per-edition indexes built once per process, renders, and sends everything over one
   SMTP connection, recording each message right after the server accepted it.
3. Failures: a 4xx is tried again in the same run (3 tries, `smtp_retry_delay` seconds apart),
   then left pending with exponential back-off and given up after 3 days; a 5xx on the address
   bounces the row and suppresses the address; a dropped connection or 421 reconnects.

Which editions a digest covers: a paper's edition is the UTC date it entered the store, so an
edition is complete ("closed") once its UTC day has ended. A digest due at instant T covers the
closed editions after the subscriber's previous delivery row, from the day they confirmed, at most
7 (daily) or 14 (weekly) days back; its row carries the newest of them. Windows of one subscriber
are contiguous and never overlap, so no paper is ever sent twice and no closed edition is skipped.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from contextlib import nullcontext
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email.utils import parseaddr
from functools import lru_cache

from sqlalchemy import Engine, Integer, String, and_, bindparam, func, or_, select, text, update
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.mailer import (
    OutboxTransport,
    PermanentFailure,
    ServerUnavailable,
    SmtpTransport,
    TransientFailure,
    make_transport,
    open_transport,
)
from digest.models import (
    Delivery,
    DeliveryStatus,
    Frequency,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from digest.schedule import next_due_at

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
Enqueue = Callable[[list[int]], None]

DAY = timedelta(days=1)
GIVE_UP_AFTER = timedelta(days=3)
SAME_RUN_TRIES = 3
FIRST_BACKOFF = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=6)
MAX_WINDOW_DAYS = {Frequency.daily: 7, Frequency.weekly: 14}
DISPATCH_PAGE = 1000
BUILDERS = 2  # processes building digests for `digest send` (at most one per CPU)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@lru_cache(maxsize=8)
def _bare_address(sender: str) -> str:
    return parseaddr(sender)[1]


def envelope_sender(settings: Settings) -> str:
    """The bare address of DIGEST_FROM: where bounces (DSNs) come back to."""
    return _bare_address(settings.sender)


# --------------------------------------------------------------------------- editions and windows


def latest_closed_edition(session: Session, now: datetime) -> date | None:
    """The newest edition whose UTC day has ended: no paper can join it any more."""
    return session.scalar(select(func.max(Paper.edition)).where(Paper.edition < now.astimezone(timezone.utc).date()))


def latest_edition(session: Session) -> date | None:
    return session.scalar(select(func.max(Paper.edition)))


def window_start(subscriber: Subscriber, edition: date, previous: date | None) -> date:
    """First edition of the digest whose newest edition is `edition` (see the module docstring)."""
    frequency = subscriber.frequency if isinstance(subscriber.frequency, Frequency) else Frequency(subscriber.frequency)
    bounds = [edition - timedelta(days=MAX_WINDOW_DAYS[frequency] - 1)]
    since = subscriber.confirmed_at or subscriber.created_at
    if since is not None:
        bounds.append(since.astimezone(timezone.utc).date())
    if previous is not None:
        bounds.append(previous + DAY)
    return max(bounds)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _among(session: Session, column, values: Sequence, item_type):
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`: one parameter instead of a
    thousand, so the driver does not parse a new query text for every page."""
    if _is_postgresql(session):
        from sqlalchemy import any_
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(values), type_=ARRAY(item_type)))
    return column.in_(list(values))


def _latest_rows(session: Session, subscriber_ids: Sequence[int]) -> dict[int, date]:
    rows = session.execute(
        select(Delivery.subscriber_id, func.max(Delivery.edition))
        .where(_among(session, Delivery.subscriber_id, subscriber_ids, Integer))
        .group_by(Delivery.subscriber_id)
    )
    return {sid: edition for sid, edition in rows}


def _suppressed(session: Session, emails: Iterable[str]) -> set[str]:
    emails = list(emails)
    if not emails:
        return set()
    return set(session.scalars(select(Suppression.email).where(_among(session, Suppression.email, emails, String))))


def _pending_row(subscriber_id: int, edition: date, now: datetime, requeue_at: datetime) -> dict:
    """A new ledger row; `requeue_at` is when a sweep re-enqueues it if its first enqueue was lost."""
    return {
        "subscriber_id": subscriber_id,
        "edition": edition,
        "status": DeliveryStatus.pending,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": requeue_at,
        "paper_ids": [],
    }


def _insert_ignoring_duplicates(session: Session, rows: list[dict]) -> list[int]:
    """INSERT ... ON CONFLICT (subscriber_id, edition) DO NOTHING RETURNING id: the ids of the
    rows this call created; a row another run created first is simply not returned."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        shared = {key: value for key, value in rows[0].items() if key != "subscriber_id"}
        if all({key: value for key, value in row.items() if key != "subscriber_id"} == shared for row in rows):
            return _insert_page_postgresql(session, [row["subscriber_id"] for row in rows], shared)
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (
        insert(Delivery.__table__)  # Core, not the ORM bulk path: a page of rows in one statement
        .values(rows)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "edition"])
        .returning(Delivery.id)
    )
    return list(session.scalars(statement))


def _insert_page_postgresql(session: Session, subscriber_ids: list[int], shared: dict) -> list[int]:
    """A page of rows that differ only by subscriber, as one INSERT ... SELECT FROM unnest(ids):
    compiling a 1000-row VALUES list cost more than the insert itself."""
    table = Delivery.__table__
    names = list(shared)
    statement = text(
        f"INSERT INTO deliveries (subscriber_id, {', '.join(names)}) "
        f"SELECT sid, {', '.join(':' + name for name in names)} FROM unnest(CAST(:ids AS INTEGER[])) AS sid "
        "ON CONFLICT (subscriber_id, edition) DO NOTHING RETURNING id"
    ).bindparams(*(bindparam(name, type_=table.c[name].type) for name in names))
    return list(session.scalars(statement, {"ids": subscriber_ids, **shared}))


# --------------------------------------------------------------------------- dispatch

# What dispatch needs of a subscriber (window and next due time): plain rows, no ORM objects.
_SCHEDULE_COLUMNS = (
    Subscriber.id, Subscriber.email, Subscriber.next_due_at, Subscriber.timezone, Subscriber.delivery_hour,
    Subscriber.frequency, Subscriber.weekday, Subscriber.confirmed_at, Subscriber.created_at,
)


@dataclass
class DispatchReport:
    edition: date | None = None
    due: int = 0
    created: int = 0
    nothing_new: int = 0  # due, but no closed edition they have not had yet
    suppressed: int = 0
    requeued: int = 0
    enqueued: int = 0
    scheduled: int = 0  # active subscribers who had no next_due_at yet
    ids: list[int] = field(default_factory=list)  # every id handed to enqueue


def _chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _enqueue_committed(
    factory: SessionFactory, ids: list[int], enqueue: Enqueue, settings: Settings, report: DispatchReport
) -> None:
    """Hand committed row ids to the queue. If the broker refuses, the rows are made due for the
    next run at once (they stay pending: nothing is lost) and the error goes up, loudly."""
    done = 0
    try:
        for chunk in _chunks(ids, settings.batch_size):
            enqueue(chunk)
            done += len(chunk)
            report.enqueued += len(chunk)
            report.ids.extend(chunk)
    except Exception:
        left = ids[done:]
        try:
            with factory() as session, session.begin():
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(left), Delivery.status == DeliveryStatus.pending)
                    .values(next_attempt_at=None)
                    .execution_options(synchronize_session=False)
                )
        except Exception:  # the next sweep finds them after sending_timeout anyway
            log.exception("could not mark %d unqueued deliveries for the next run", len(left))
        raise


def dispatch(
    factory: SessionFactory,
    settings: Settings,
    enqueue: Enqueue,
    now: datetime | None = None,
    page_size: int = DISPATCH_PAGE,
) -> DispatchReport:
    """Create delivery rows for every subscriber due at `now` and enqueue them; then enqueue the
    rows waiting for a retry or stuck in `sending`. Safe to run twice at the same time."""
    now = now or utcnow()
    report = DispatchReport()
    requeue_at = now + timedelta(seconds=settings.sending_timeout)
    with factory() as session:
        report.edition = latest_closed_edition(session, now)
    report.scheduled = schedule_unscheduled(factory, now, page_size)

    after = 0
    statistics_checked = False
    while True:
        with factory() as session, session.begin():
            page = list(
                session.execute(
                    select(*_SCHEDULE_COLUMNS)
                    .where(
                        Subscriber.status == SubscriberStatus.active,
                        Subscriber.next_due_at <= now,
                        Subscriber.id > after,
                    )
                    .order_by(Subscriber.id)
                    .limit(page_size)
                )
            )
            if not page:
                break
            after = page[-1].id
            report.due += len(page)
            latest = _latest_rows(session, [s.id for s in page])
            suppressed = _suppressed(session, (s.email for s in page))
            rows = []
            for subscriber in page:
                if subscriber.email in suppressed:
                    report.suppressed += 1
                    continue
                edition = report.edition
                previous = latest.get(subscriber.id)
                if edition is None or (previous is not None and previous >= edition) or (
                    window_start(subscriber, edition, previous) > edition
                ):
                    report.nothing_new += 1
                    continue
                rows.append(_pending_row(subscriber.id, edition, now, requeue_at))
            created = _insert_ignoring_duplicates(session, rows)
            report.created += len(created)
            # Conditional on the value we read: a concurrent dispatch that advanced it first wins,
            # and both computed the same instant anyway.
            _advance(session, [(s.id, s.next_due_at, next_due_at(s, now)) for s in page])
        # Committed: only now may a worker see these ids.
        _enqueue_committed(factory, created, enqueue, settings, report)
        if created and not statistics_checked:
            statistics_checked = True
            _refresh_statistics_if_stale(factory, report.created)

    requeued = sweep(factory, settings, now)
    report.requeued = len(requeued)
    _enqueue_committed(factory, requeued, enqueue, settings, report)
    log.info(
        "dispatch: edition %s, %d due, %d new deliveries, %d with nothing new, %d suppressed, %d re-enqueued",
        report.edition, report.due, report.created, report.nothing_new, report.suppressed, report.requeued,
    )
    return report


def _refresh_statistics_if_stale(factory: SessionFactory, created: int) -> None:
    """On a fresh install the deliveries table was analyzed while empty (or nearly): PostgreSQL
    then plans every claim, load and outcome of the first edition for a table of a few rows,
    and scans (measured: a batch of 100 cost 45 ms more) until autovacuum analyzes it a minute
    later. When the statistics count fewer rows than this run just added, analyze it now, once.
    A never-analyzed table (reltuples -1) is estimated from its real size and left alone."""
    with factory() as session:
        bind = session.get_bind()
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        return  # (a test's shared transaction is never analyzed from inside)
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        known = connection.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass"))
        if known is not None and 0 <= known < created:
            connection.exec_driver_sql("ANALYZE deliveries")


def _advance(session: Session, changes: list[tuple[int, datetime, datetime]]) -> None:
    """next_due_at: old -> new for each (id, old, new), only where it still holds the old value."""
    if _is_postgresql(session):  # one statement for the page instead of one per subscriber
        session.execute(
            text(
                "UPDATE subscribers SET next_due_at = v.new "
                "FROM unnest(CAST(:ids AS INTEGER[]), CAST(:olds AS TIMESTAMPTZ[]), CAST(:news AS TIMESTAMPTZ[])) "
                "AS v(id, old, new) WHERE subscribers.id = v.id AND subscribers.next_due_at = v.old"
            ),
            {"ids": [c[0] for c in changes], "olds": [c[1] for c in changes], "news": [c[2] for c in changes]},
        )
        return
    table = Subscriber.__table__
    session.connection().execute(
        table.update()
        .where(table.c.id == bindparam("sid"), table.c.next_due_at == bindparam("old"))
        .values(next_due_at=bindparam("new")),
        [{"sid": sid, "old": old, "new": new} for sid, old, new in changes],
    )


def schedule_unscheduled(factory: SessionFactory, now: datetime, page_size: int = DISPATCH_PAGE) -> int:
    """Active subscribers without a due time (made active by hand or by an old import) get their
    next hour, not a digest at once: nobody is mailed at 3 a.m. because a field was empty."""
    done = 0
    while True:
        with factory() as session, session.begin():
            page = list(
                session.execute(
                    select(*_SCHEDULE_COLUMNS)
                    .where(Subscriber.status == SubscriberStatus.active, Subscriber.next_due_at.is_(None))
                    .order_by(Subscriber.id)
                    .limit(page_size)
                )
            )
            if not page:
                return done
            table = Subscriber.__table__
            session.connection().execute(
                table.update().where(table.c.id == bindparam("sid"), table.c.next_due_at.is_(None))
                .values(next_due_at=bindparam("new")),
                [{"sid": s.id, "new": next_due_at(s, now)} for s in page],
            )
            done += len(page)


def sweep(factory: SessionFactory, settings: Settings, now: datetime) -> list[int]:
    """Rows that need a task again: pending ones whose retry time has come (or that never made it
    to the queue), and rows in `sending` whose worker has been silent longer than sending_timeout.
    Their next_attempt_at moves forward so the next sweep does not enqueue them again meanwhile."""
    stale = now - timedelta(seconds=settings.sending_timeout)
    requeue_at = now + timedelta(seconds=settings.sending_timeout)
    with factory() as session, session.begin():
        ids = list(
            session.scalars(
                select(Delivery.id)
                .where(
                    or_(
                        and_(
                            Delivery.status == DeliveryStatus.pending,
                            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                        ),
                        and_(Delivery.status == DeliveryStatus.sending, Delivery.claimed_at < stale),
                    ),
                    Delivery.subscriber_id.is_not(None),
                )
                .order_by(Delivery.id)
            )
        )
        if ids:
            for chunk in _chunks(ids, 1000):
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(chunk), Delivery.status == DeliveryStatus.pending)
                    .values(next_attempt_at=requeue_at)
                    .execution_options(synchronize_session=False)
                )
    return ids


def create_edition_rows(
    factory: SessionFactory,
    edition: date,
    now: datetime | None = None,
    email: str | None = None,
    page_size: int = DISPATCH_PAGE,
) -> tuple[list[int], int]:
    """`digest send --edition D [--to EMAIL]`: a row for edition D for every active subscriber
    (or one) who has not had it, whatever their hour. Returns (new row ids, how many already had it)."""
    now = now or utcnow()
    created: list[int] = []
    had_it = 0
    after = 0
    while True:
        with factory() as session, session.begin():
            query = select(*_SCHEDULE_COLUMNS).where(Subscriber.status == SubscriberStatus.active, Subscriber.id > after)
            if email is not None:
                query = query.where(Subscriber.email == email)
            page = list(session.execute(query.order_by(Subscriber.id).limit(page_size)))
            if not page:
                break
            after = page[-1].id
            latest = _latest_rows(session, [s.id for s in page])
            rows = []
            for subscriber in page:
                previous = latest.get(subscriber.id)
                # Windows are contiguous: a row at D or later means D was covered already.
                if previous is not None and previous >= edition:
                    had_it += 1
                    continue
                if window_start(subscriber, edition, previous) > edition and email is None:
                    had_it += 1  # subscribed after this edition
                    continue
                rows.append(_pending_row(subscriber.id, edition, now, now + timedelta(hours=1)))
            created.extend(_insert_ignoring_duplicates(session, rows))
    return created, had_it


# --------------------------------------------------------------------------- building digests


@dataclass
class EditionData:
    key: tuple
    papers: list[Paper]
    index: object
    renderer: object | None = None


@dataclass
class Job:
    delivery_id: int
    edition: date
    editions: tuple[date, ...]  # the window, oldest first
    subscriber: Reader
    created_at: datetime | None = None
    attempts: int = 1


@dataclass
class Composed:
    recipient: str
    data: bytes
    message_id: str
    paper_ids: list[str]


class DigestComposer:
    """Per process: one match index and one renderer per edition, rebuilt only when the edition's
    papers changed (count or newest updated_at). Per subscriber only matching their topics against
    the cached index, a few string joins and the headers remain."""

    def __init__(self, settings: Settings, keep: int = 16) -> None:
        self.settings = settings
        self.keep = keep
        self._editions: OrderedDict[date, EditionData] = OrderedDict()

    def _edition(self, session: Session, edition: date, key: tuple) -> EditionData:
        from digest.matching import EditionIndex

        cached = self._editions.get(edition)
        if cached is not None and cached.key == key:
            self._editions.move_to_end(edition)
            return cached
        papers = list(session.scalars(select(Paper).where(Paper.edition == edition).order_by(Paper.id)))
        data = EditionData(key, papers, EditionIndex.build(papers))
        self._editions[edition] = data
        while len(self._editions) > self.keep:
            self._editions.popitem(last=False)
        return data

    def editions(self, session: Session, editions: Iterable[date]) -> dict[date, EditionData]:
        wanted = sorted(set(editions))
        if not wanted:
            return {}
        keys = {
            edition: (count, updated)
            for edition, count, updated in session.execute(
                select(Paper.edition, func.count(), func.max(Paper.updated_at))
                .where(Paper.edition.in_(wanted))
                .group_by(Paper.edition)
            )
        }
        # Editions without papers (weekends, downtime) cost nothing: no query, no index.
        return {edition: self._edition(session, edition, keys[edition]) for edition in wanted if edition in keys}

    def renderer(self, data: EditionData, edition: date):
        if data.renderer is None:
            from digest.render import EditionRenderer

            data.renderer = EditionRenderer(self.settings, edition)
        return data.renderer

    def match(self, session: Session, jobs: Sequence[Job]) -> dict[int, list]:
        """Each job's matches across its window, best first (matching ranks within an edition;
        across editions the newer edition's papers come first among equal scores)."""
        from digest.matching import match_subscribers
        from digest.matching.rank import Top

        data = self.editions(session, (e for job in jobs for e in job.editions))
        # A digest shows max_papers: each edition's first max_papers hold the window's first
        # max_papers (the merge below keeps each edition's order), `total` counts the rest.
        shown = {job.delivery_id: max(job.subscriber.max_papers, 1) for job in jobs}
        per_job: dict[int, Top] = {job.delivery_id: Top() for job in jobs}
        sources: dict[int, int] = {job.delivery_id: 0 for job in jobs}  # editions that matched, per job
        for edition in sorted(data, reverse=True):
            queries = {
                job.delivery_id: job.subscriber.topics for job in jobs if edition in job.editions
            }
            if not queries or not data[edition].papers:
                continue
            for delivery_id, matches in match_subscribers(data[edition].index, queries, limit=shown).items():
                if matches.total:
                    per_job[delivery_id].extend(matches)
                    per_job[delivery_id].total += matches.total
                    sources[delivery_id] += 1
        for job in jobs:
            if sources[job.delivery_id] > 1:  # one edition's matches come ranked already
                per_job[job.delivery_id].sort(key=lambda m: -m.score)  # stable among equals
        return per_job

    def compose(self, job: Job, matches: list) -> Composed | None:
        """One subscriber's message, or None when nothing matched and they asked not to be told."""
        from digest.links import settings_url, unsubscribe_url, view_url
        from digest.message import make_message_id, message_bytes
        from digest.render import DigestLinks

        subscriber = job.subscriber
        data = self._editions.get(job.edition) or EditionData((0, None), [], None)
        renderer = self.renderer(data, job.edition)
        shown = matches[: max(subscriber.max_papers, 1)]
        total = getattr(matches, "total", len(matches))  # match() cuts digests to what is shown
        unsubscribe = unsubscribe_url(subscriber, self.settings)
        view = view_url(subscriber, job.edition, self.settings)
        links = DigestLinks(
            settings_url=settings_url(subscriber, self.settings),
            unsubscribe_url=unsubscribe,
            view_url=view,
            more_url=view if total > len(shown) else None,
        )
        topics = subscriber.topics
        if shown:
            rendered = renderer.render_digest(subscriber.email, topics, shown, total, links)
        elif subscriber.notify_empty:
            rendered = renderer.render_empty(subscriber.email, topics, links)
        else:
            return None
        message_id = make_message_id(subscriber.id, job.edition, self.settings)
        data = message_bytes(rendered, subscriber.email, self.settings, message_id=message_id, unsubscribe_url=unsubscribe)
        return Composed(subscriber.email, data, message_id, [m.paper.id for m in shown])


_composers: dict[int, DigestComposer] = {}


def composer_for(settings: Settings) -> DigestComposer:
    """The process's composer (its caches outlive one batch: a worker serves many)."""
    key = id(settings)
    if key not in _composers:
        _composers.clear()
        _composers[key] = DigestComposer(settings)
    return _composers[key]


# --------------------------------------------------------------------------- sending a batch


@dataclass
class SendReport:
    sent: int = 0
    skipped: int = 0  # nothing matched (and not asked to be told), or no longer active
    failed: int = 0  # given up, or a message the server refused (not the address)
    bounced: int = 0  # 5xx on the address: suppressed
    suppressed: int = 0  # not sent because the address is suppressed
    retrying: int = 0  # 4xx after the same-run tries: pending with back-off
    not_claimed: int = 0  # another worker holds or finished these
    errors: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # outbox files written

    def add(self, other: SendReport) -> None:
        for name in ("sent", "skipped", "failed", "bounced", "suppressed", "retrying", "not_claimed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        self.paths.extend(other.paths)

    def summary(self) -> str:
        return (
            f"{self.sent} sent, {self.skipped} skipped (nothing matched), {self.failed} failed, "
            f"{self.suppressed + self.bounced} suppressed"
            + (f" ({self.bounced} bounced now)" if self.bounced else "")
            + (f", {self.retrying} to retry later" if self.retrying else "")
        )


def claim(factory: SessionFactory, ids: Sequence[int], now: datetime, settings: Settings) -> list[int]:
    """pending -> sending (or a stale `sending` taken over), in one conditional UPDATE: the ids
    returned are this caller's alone."""
    stale = now - timedelta(seconds=settings.sending_timeout)
    with factory() as session, session.begin():
        return list(
            session.scalars(
                update(Delivery)
                .where(
                    Delivery.id.in_(list(ids)),
                    or_(
                        Delivery.status == DeliveryStatus.pending,
                        and_(Delivery.status == DeliveryStatus.sending, Delivery.claimed_at < stale),
                    ),
                )
                .values(status=DeliveryStatus.sending, claimed_at=now, attempts=Delivery.attempts + 1)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
        )


class Recorder:
    """Writes each outcome right after the server answered, so a killed worker leaves at most the
    message in flight unrecorded.

    On PostgreSQL (psycopg) it has one autocommit connection of its own, with synchronous_commit
    off, and sends each outcome as a prepared UPDATE without waiting for PostgreSQL's answer: the
    statement is written whole to the socket before the next message goes to the SMTP server, and
    its answer is read just before the next outcome is sent (or when the batch ends). So the SMTP
    exchange of message N+1 overlaps the commit of message N's outcome instead of following it.
    Why this keeps the window: PostgreSQL executes and commits a statement it has received whether
    or not the client is still there to read the answer (an implicit transaction ends at the
    protocol's Sync, before any reply is flushed), and the kernel delivers bytes already written
    even if this process is killed a moment later. A worker crash thus loses nothing; only a crash
    of PostgreSQL itself can forget the last fraction of a second of outcomes (synchronous_commit
    off), whose rows then return through the `sending` timeout: a duplicate, never a loss. An
    outcome PostgreSQL refused is raised at the next call, still inside the batch.

    Elsewhere (SQLite, other drivers) each outcome is a short committed transaction."""

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self._connection = None
        self._pgconn = None
        self._prepared: dict[tuple[str, ...], bytes] = {}
        self._waiting = False  # an outcome sent whose answer is not read yet
        with factory() as session:
            bind = session.get_bind()
        if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
            self._connection = bind.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._connection.exec_driver_sql("SET synchronous_commit TO off")
            driver = self._connection.connection.driver_connection
            if driver.__class__.__module__.startswith("psycopg"):  # psycopg 3: libpq's own calls
                self._pgconn = driver.pgconn

    def _statement(self, columns: tuple[str, ...]) -> bytes:
        name = self._prepared.get(columns)
        if name is None:
            from psycopg import pq

            assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, 1))
            sql = f"UPDATE deliveries SET {assignments} WHERE id = ${len(columns) + 1} AND status = 'sending'"
            name = f"digest_record_{len(self._prepared)}".encode()
            result = self._pgconn.prepare(name, sql.encode())
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise RuntimeError(f"could not prepare {sql!r}: {result.get_error_message()}")
            self._prepared[columns] = name
        return name

    @staticmethod
    def _text_value(value) -> bytes | None:
        """A parameter in PostgreSQL's text format; the column's type is the server's to infer."""
        if value is None:
            return None
        if isinstance(value, DeliveryStatus):
            return value.name.encode()  # stored as the enum's name (native_enum=False)
        if isinstance(value, list):
            return json.dumps(value).encode()
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return value.isoformat().encode()
        return str(value).encode()

    def __call__(self, delivery_id: int, **values) -> None:
        if self._pgconn is not None:
            self.wait()
            columns = tuple(values)
            name = self._statement(columns)
            params = [self._text_value(values[column]) for column in columns]
            params.append(str(int(delivery_id)).encode())
            self._pgconn.send_query_prepared(name, params)
            self._waiting = True
            self._flush()
            return
        statement = (
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.sending)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        self._execute(statement)

    def _flush(self) -> None:
        """psycopg keeps libpq non-blocking: wait until the whole statement is on the socket."""
        import select as select_module

        while self._pgconn.flush():
            select_module.select([], [self._pgconn.socket], [])

    def wait(self) -> None:
        """Read the answer to the outcome sent last; raise if PostgreSQL refused it."""
        if not self._waiting:
            return
        from psycopg import pq

        self._waiting = False
        error = None
        while (result := self._pgconn.get_result()) is not None:
            if result.status != pq.ExecStatus.COMMAND_OK and error is None:
                error = result.get_error_message() or str(result.status)
        if error is not None:
            raise RuntimeError(f"recording an outcome failed: {error}")

    def _execute(self, statement) -> None:
        """On the recorder's own autocommit connection when it has one, else in a short transaction."""
        if self._connection is not None:
            self.wait()
            self._connection.execute(statement)
            return
        with self.factory() as session, session.begin():
            session.execute(statement)

    def refresh_claims(self, ids: Sequence[int], at: datetime) -> None:
        statement = (
            update(Delivery)
            .where(Delivery.id.in_(list(ids)), Delivery.status == DeliveryStatus.sending)
            .values(claimed_at=at)
            .execution_options(synchronize_session=False)
        )
        self._execute(statement)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self.wait()
                for name in self._prepared.values():
                    self._connection.exec_driver_sql(f"DEALLOCATE {name.decode()}")
                self._connection.exec_driver_sql("RESET synchronous_commit")
            finally:
                self._prepared.clear()
                self._connection.close()
                self._connection = self._pgconn = None


def _suppress(factory: SessionFactory, email: str, reason: str) -> None:
    with factory() as session, session.begin():
        if session.get(Suppression, email) is None:
            session.add(Suppression(email=email, reason=reason[:1000]))


def backoff(attempts: int) -> timedelta:
    """5 min, 10, 20, ... capped at 6 h: a greylisting server is retried soon, a full mailbox rarely."""
    return min(FIRST_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


@dataclass(slots=True)
class Reader:
    """What building one digest needs of a subscriber, read as plain rows (no ORM identity map:
    a batch only reads them). `topics` are the query strings, in the subscriber's order."""

    id: int
    email: str
    status: SubscriberStatus
    token_version: int
    max_papers: int
    notify_empty: bool
    frequency: Frequency
    confirmed_at: datetime | None
    created_at: datetime | None
    topics: list[str] = field(default_factory=list)


def _load_jobs(session: Session, claimed: Sequence[int]) -> tuple[list[Job], list[tuple[int, str]]]:
    """The claimed rows as jobs (subscriber, topics, window), in three queries for the batch;
    and the rows to skip, with the reason."""
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
    deliveries = session.execute(
        select(Delivery.id, Delivery.subscriber_id, Delivery.edition, Delivery.created_at, Delivery.attempts,
               previous_edition)
        .where(_among(session, Delivery.id, claimed, Integer))
        .order_by(Delivery.id)
    ).all()
    subscriber_ids = sorted({d.subscriber_id for d in deliveries if d.subscriber_id is not None})
    subscribers: dict[int, Reader] = {}
    if subscriber_ids:
        for row in session.execute(
            select(
                Subscriber.id, Subscriber.email, Subscriber.status, Subscriber.token_version, Subscriber.max_papers,
                Subscriber.notify_empty, Subscriber.frequency, Subscriber.confirmed_at, Subscriber.created_at,
            ).where(_among(session, Subscriber.id, subscriber_ids, Integer))
        ):
            subscribers[row.id] = Reader(*row)
        for subscriber_id, query in session.execute(
            select(Topic.subscriber_id, Topic.query)
            .where(_among(session, Topic.subscriber_id, subscriber_ids, Integer))
            .order_by(Topic.subscriber_id, Topic.position, Topic.id)
        ):
            subscribers[subscriber_id].topics.append(query)
    previous = {delivery.id: delivery.previous for delivery in deliveries if delivery.previous is not None}
    suppressed = _suppressed(session, (s.email for s in subscribers.values()))
    jobs: list[Job] = []
    skipped: list[tuple[int, str]] = []
    for delivery in deliveries:
        subscriber = subscribers.get(delivery.subscriber_id)
        if subscriber is None or subscriber.status != SubscriberStatus.active:
            skipped.append((delivery.id, "no longer subscribed"))
            continue
        if subscriber.email in suppressed:
            skipped.append((delivery.id, "suppressed"))
            continue
        start = min(window_start(subscriber, delivery.edition, previous.get(delivery.id)), delivery.edition)
        days = (delivery.edition - start).days
        editions = tuple(start + timedelta(days=n) for n in range(days + 1))
        jobs.append(Job(delivery.id, delivery.edition, editions, subscriber, delivery.created_at, delivery.attempts))
    return jobs, skipped


@dataclass
class _Pending:
    job: Job
    composed: Composed
    tries: int = 0
    retry_at: float = 0.0
    last_error: str = ""


def send_batch(
    factory: SessionFactory,
    settings: Settings,
    delivery_ids: Sequence[int],
    transport: SmtpTransport | OutboxTransport | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[..., None] | None = None,
    composer: DigestComposer | None = None,
) -> SendReport:
    """Claim, build and send these deliveries over one connection; record each outcome."""
    now = now or utcnow()
    report = SendReport()
    claimed = claim(factory, delivery_ids, now, settings)
    report.not_claimed = len(set(delivery_ids)) - len(claimed)
    if not claimed:
        return report
    if transport is None:
        with open_transport(settings) as own:
            return _send_claimed(factory, settings, claimed, own, now, sleep, report, on_progress, composer)
    return _send_claimed(factory, settings, claimed, transport, now, sleep, report, on_progress, composer)


def _send_claimed(factory, settings, claimed, transport, now, sleep, report, on_progress, composer,
                  built=None) -> SendReport:
    _record = Recorder(factory)
    try:
        report = _send_recorded(factory, settings, claimed, transport, now, sleep, report, on_progress, composer,
                                _record, built)
        _record.wait()  # the last outcome is committed before the batch counts as done
        return report
    except Exception as exc:
        # A bug or a lost database must not leave the batch in `sending` until the timeout:
        # what was not recorded goes back to pending, for a later run, and the error goes up.
        log.exception("batch of %d deliveries failed", len(claimed))
        try:
            with factory() as session, session.begin():
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(list(claimed)), Delivery.status == DeliveryStatus.sending)
                    .values(status=DeliveryStatus.pending, next_attempt_at=now + FIRST_BACKOFF,
                            last_error=f"batch failed: {exc!r}"[:1000])
                    .execution_options(synchronize_session=False)
                )
        except Exception:
            log.exception("could not release the batch; the sending timeout will")
        raise
    finally:
        _record.close()


@dataclass
class Built:
    """A claimed batch, built: rows to skip (with the reason), and per job its message, None
    (nothing matched, not asked to be told) or the error that stopped building it."""

    skipped: list[tuple[int, str]]
    built: list[tuple[Job, Composed | None | str]]


def build_batch(factory: SessionFactory, settings: Settings, claimed: Sequence[int],
                composer: DigestComposer | None = None) -> Built:
    """Load, match and compose a claimed batch (no sending, no writing)."""
    composer = composer or composer_for(settings)
    with factory() as session:
        jobs, skipped = _load_jobs(session, claimed)
        matches = composer.match(session, jobs) if jobs else {}
    built: list[tuple[Job, Composed | None | str]] = []
    for job in jobs:
        try:
            built.append((job, composer.compose(job, matches.get(job.delivery_id, []))))
        except Exception as exc:  # one bad digest must not stop the batch
            log.exception("could not build delivery %d for %s", job.delivery_id, job.subscriber.email)
            built.append((job, f"build failed: {exc!r}"))
    return Built(skipped, built)


def _send_recorded(factory, settings, claimed, transport, now, sleep, report, on_progress, composer, record,
                   built=None):
    progress = on_progress or (lambda **counts: None)
    if built is None:
        built = build_batch(factory, settings, claimed, composer)
    elif not isinstance(built, Built):  # a Future from the builder process
        built = built.result()
    skipped = built.skipped
    created_at = {job.delivery_id: job.created_at for job, _ in built.built}
    attempts = {job.delivery_id: job.attempts for job, _ in built.built}

    for delivery_id, reason in skipped:
        record(delivery_id, status=DeliveryStatus.skipped, last_error=reason)
        if reason == "suppressed":
            report.suppressed += 1
            progress(suppressed=1)
        else:
            report.skipped += 1
            progress(skipped=1)

    queue: list[_Pending] = []
    for job, composed in built.built:
        if isinstance(composed, str):
            record(job.delivery_id, status=DeliveryStatus.failed, last_error=composed[:1000])
            report.failed += 1
            progress(failed=1)
            continue
        if composed is None:
            record(job.delivery_id, status=DeliveryStatus.skipped, paper_ids=[], last_error=None)
            report.skipped += 1
            progress(skipped=1)
            continue
        queue.append(_Pending(job, composed))

    def leave_for_later(item: _Pending, error: str) -> None:
        given_up = now - created_at[item.job.delivery_id] >= GIVE_UP_AFTER
        if given_up:
            record(item.job.delivery_id, status=DeliveryStatus.failed, last_error=error[:1000])
            report.failed += 1
            progress(failed=1)
        else:
            record(
                item.job.delivery_id, status=DeliveryStatus.pending, last_error=error[:1000],
                next_attempt_at=now + backoff(attempts[item.job.delivery_id]),
            )
            report.retrying += 1
            progress(retrying=1)

    retry: list[_Pending] = []
    rounds = [queue]
    # A batch slowed down by a crawling server keeps its claim fresh, so that no other worker
    # mistakes it for dead and sends its rows a second time.
    heartbeat_every = settings.sending_timeout / 3
    started = last_heartbeat = time.monotonic()
    while rounds:
        current = rounds.pop(0)
        for position, item in enumerate(current):
            if time.monotonic() - last_heartbeat > heartbeat_every:
                record.refresh_claims(claimed, now + timedelta(seconds=time.monotonic() - started))
                last_heartbeat = time.monotonic()
            if item.retry_at:
                wait = item.retry_at - time.monotonic()
                if wait > 0:
                    sleep(wait)
            item.tries += 1
            composed = item.composed
            try:
                path = transport.send(composed.data, envelope_sender(settings), composed.recipient,
                                      name=f"{item.job.edition.isoformat()}-{composed.recipient}")
            except PermanentFailure as exc:
                if exc.recipient:
                    record(item.job.delivery_id, status=DeliveryStatus.bounced, last_error=str(exc)[:1000])
                    _suppress(factory, composed.recipient, f"bounced: {exc}")
                    report.bounced += 1
                    progress(bounced=1)
                else:
                    record(item.job.delivery_id, status=DeliveryStatus.failed, last_error=str(exc)[:1000])
                    report.failed += 1
                    progress(failed=1)
                continue
            except ServerUnavailable as exc:
                # Nobody's fault but the server's: everything not yet sent waits for a later run.
                report.errors.append(str(exc))
                log.error("stopping the batch: %s", exc)
                for left in [item, *current[position + 1 :], *retry, *(i for r in rounds for i in r)]:
                    leave_for_later(left, str(exc))
                return report
            except TransientFailure as exc:
                item.last_error = str(exc)
                if item.tries < SAME_RUN_TRIES:
                    item.retry_at = time.monotonic() + settings.smtp_retry_delay * item.tries
                    retry.append(item)
                else:
                    leave_for_later(item, item.last_error)
                continue
            record(
                item.job.delivery_id, status=DeliveryStatus.sent, sent_at=utcnow(),
                message_id=composed.message_id, paper_ids=composed.paper_ids, last_error=None,
            )
            if path is not None:
                report.paths.append(str(path))
            report.sent += 1
            progress(sent=1)
        if retry:
            rounds.append(sorted(retry, key=lambda i: i.retry_at))
            retry = []
    return report


# --------------------------------------------------------------------------- one process


class _Batches:
    """The batches of ids a run sends: a list known in advance, or the pages a dispatch running in
    a thread of its own has committed, handed over as they come, so that building and sending
    start with the first page instead of after the last."""

    _END = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ended = False
        self.error: BaseException | None = None
        self.dispatched: DispatchReport | None = None

    @classmethod
    def of(cls, settings: Settings, ids: Sequence[int]) -> _Batches:
        batches = cls(settings)
        for chunk in _chunks(list(ids), settings.batch_size):
            batches._queue.put(chunk)
        batches._queue.put(cls._END)
        return batches

    @classmethod
    def from_dispatch(cls, factory: SessionFactory, settings: Settings, now: datetime) -> _Batches:
        batches = cls(settings)

        def run() -> None:
            try:
                batches.dispatched = dispatch(factory, settings, batches._queue.put, now)
            except BaseException as exc:  # raised in the sending thread, after what was committed
                batches.error = exc
            finally:
                batches._queue.put(cls._END)

        batches._thread = threading.Thread(target=run, name="dispatch", daemon=True)
        batches._thread.start()
        return batches

    def take(self, wait: bool = True) -> list[int] | None:
        """The next batch; None when there are no more (or, without `wait`, none ready yet)."""
        if self._ended:
            return None
        try:
            chunk = self._queue.get(block=wait)
        except queue.Empty:
            return None
        if chunk is self._END:
            self._ended = True
            self.finish(raise_error=False)  # sending what was committed comes first; finish() raises
            return None
        return chunk

    @property
    def dispatching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def finish(self, raise_error: bool = True) -> None:
        """Wait for the dispatch thread; its error, if any, goes up here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.error is not None and raise_error:
            error, self.error = self.error, None
            raise error


def send_ids(
    factory: SessionFactory,
    settings: Settings,
    ids: Sequence[int] | _Batches,
    transport: SmtpTransport | OutboxTransport,
    on_progress: Callable[..., None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    builder: _Builder | None = None,
) -> SendReport:
    """Send these deliveries in batches over one connection; with more than one batch, forked
    builder processes build the next batches meanwhile (`builder`, when started ahead)."""
    report = SendReport()
    batches = ids if isinstance(ids, _Batches) else _Batches.of(settings, ids)
    first = batches.take()
    second = batches.take() if first is not None else None
    if builder is not None and second is None:  # started ahead, but one batch builds as fast in-line
        builder.close()
        builder = None
    elif builder is None and second is not None and not batches.dispatching:  # never fork beside a thread
        builder = _Builder.start(factory, settings)
    if builder is None:
        given = deque(chunk for chunk in (first, second) if chunk is not None)
        while (chunk := given.popleft() if given else batches.take()) is not None:
            batch = send_batch(factory, settings, chunk, transport=transport, on_progress=on_progress, sleep=sleep)
            report.add(batch)
            if batch.errors:  # the server is gone: the rest waits for the next run
                batches.finish(raise_error=False)
                break
        return report
    with builder:
        return _send_ids_built_ahead(factory, settings, [first, second], batches, transport, on_progress, sleep,
                                     builder, report)


def _send_ids_built_ahead(factory, settings, first, batches, transport, on_progress, sleep, builder, report) -> SendReport:
    """While one batch is sent and recorded here, the builder processes build the next ones (already
    claimed: the claim is what makes them ours). If this run stops early, the batches claimed ahead
    go back to pending at once, never left in `sending` until the timeout."""

    def claim_and_build(chunk: list[int]) -> tuple[list[int], datetime, SendReport, object]:
        now = utcnow()
        claimed = claim(factory, chunk, now, settings)
        ahead = SendReport(not_claimed=len(set(chunk)) - len(claimed))
        return claimed, now, ahead, builder.submit(claimed) if claimed else None

    def fill(ahead: deque) -> None:
        # Keep every builder busy; wait for a dispatch still committing pages only when there is
        # nothing else to send.
        while len(ahead) < builder.depth and (chunk := batches.take(wait=not ahead)) is not None:
            ahead.append(claim_and_build(chunk))

    ahead: deque = deque()
    try:
        ahead.extend(claim_and_build(chunk) for chunk in first)
        fill(ahead)
        while ahead:
            claimed, now, batch, built = ahead.popleft()
            if (following := batches.take(wait=False)) is not None:
                ahead.append(claim_and_build(following))
            if claimed:
                _send_claimed(factory, settings, claimed, transport, now, sleep, batch, on_progress, None, built)
            report.add(batch)
            if batch.errors:  # the server is gone: the rest waits for the next run
                for waiting in ahead:
                    _release(factory, waiting[0], "; ".join(batch.errors))
                ahead.clear()
                batches.finish(raise_error=False)
                break
            fill(ahead)
    except BaseException:
        for waiting in ahead:
            _release(factory, waiting[0], "run stopped before this batch was sent")
        raise
    return report


def _release(factory: SessionFactory, claimed: Sequence[int], reason: str) -> None:
    """Claimed but not sent: pending again and due at the next run."""
    if not claimed:
        return
    with factory() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(list(claimed)), Delivery.status == DeliveryStatus.sending)
            .values(status=DeliveryStatus.pending, next_attempt_at=None, last_error=reason[:1000])
            .execution_options(synchronize_session=False)
        )


class _Builder:
    """Forked processes that load, match and compose batches for `digest send`, so that building
    (about three quarters of the CPU per message) runs on the other cores while this process talks
    to the SMTP server and records outcomes. Only for a real PostgreSQL engine on a machine with
    more than one CPU; everything else builds in-line, as before."""

    def __init__(self, pool, depth: int) -> None:
        self.pool = pool
        self.depth = depth  # batches claimed and building while one is sent

    @classmethod
    def start(cls, factory: SessionFactory, settings: Settings, warm: Sequence[date] = ()) -> _Builder | None:
        """Fork the builders now. Each one loads the `warm` editions' papers, match index and
        templates at once, so that `digest send` can start them before it creates the rows: the
        set-up then overlaps that work instead of delaying the first message."""
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        if (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
            return None
        with factory() as session:
            bind = session.get_bind()
        if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
            return None
        processes = min(os.cpu_count() or 1, BUILDERS)
        pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("fork"),
            initializer=_builder_init, initargs=(factory, settings, bind, tuple(warm)),
        )
        pool.submit(int)  # with fork, the first task starts every process, and so their warm-up
        return cls(pool, processes)

    def submit(self, claimed: list[int]):
        return self.pool.submit(_builder_build, claimed)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> _Builder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_builder_state: dict[str, object] = {}


def _builder_init(factory: SessionFactory, settings: Settings, engine: Engine, warm: tuple[date, ...] = ()) -> None:
    engine.dispose(close=False)  # the parent's pooled connections are the parent's: open our own
    _builder_state.update(factory=factory, settings=settings)
    if warm:
        try:
            composer = composer_for(settings)
            with factory() as session:
                for edition, data in composer.editions(session, warm).items():
                    composer.renderer(data, edition)
        except Exception:  # only a head start: the first batch builds whatever is missing
            log.exception("builder warm-up failed")


def _builder_build(claimed: list[int]) -> Built:
    return build_batch(_builder_state["factory"], _builder_state["settings"], claimed)


@dataclass
class SendRun:
    report: SendReport
    edition: date | None
    transport: str
    notes: list[str] = field(default_factory=list)


def send_now(
    factory: SessionFactory,
    settings: Settings,
    edition: date | None = None,
    email: str | None = None,
    now: datetime | None = None,
    progress_factory: Callable[[int], object] | None = None,
    transport: SmtpTransport | OutboxTransport | None = None,
) -> SendRun:
    """`digest send`: everything in one process over one connection.

    Without options: the digests due now (as dispatch would create them) plus rows waiting for a
    retry or left in `sending` by a dead worker. With `edition`: that edition to every active
    subscriber who has not had it, whatever the hour. With `email`: only that subscriber, whatever
    their hour (the newest edition unless `edition` is given)."""
    from digest.errors import DigestError

    now = now or utcnow()
    notes: list[str] = []
    with factory() as session:
        if email is not None:
            subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))
            if subscriber is None:
                raise DigestError(f"no subscriber {email}")
            if subscriber.status != SubscriberStatus.active:
                raise DigestError(f"{email} is {subscriber.status.value}, not active: nothing to send")
            email = subscriber.email
        if (edition is not None or email is not None) and edition is None:
            edition = latest_edition(session)
            if edition is None:
                raise DigestError("the store has no papers yet: run `digest fetch` first")
        if edition is not None and not session.scalar(select(func.count()).select_from(Paper).where(Paper.edition == edition)):
            raise DigestError(f"edition {edition} has no papers (editions are the UTC dates papers were fetched)")
        due = _due_count(session, edition, email, now)
        builder = None
        if due > settings.batch_size:  # more than one batch: builders start while rows are created
            warm = edition or latest_closed_edition(session, now)
            builder = _Builder.start(factory, settings, warm=[warm] if warm else [])

    try:
        return _send_run(factory, settings, edition, email, now, notes, progress_factory, transport, builder, due)
    finally:
        if builder is not None:
            builder.close()


def _due_count(session: Session, edition: date | None, email: str | None, now: datetime) -> int:
    """How many rows this run will create, about (those who already had the edition count too)."""
    if email is not None:
        return 1
    active = select(func.count()).select_from(Subscriber).where(Subscriber.status == SubscriberStatus.active)
    if edition is None:
        active = active.where(Subscriber.next_due_at <= now)
    return session.scalar(active) or 0


def _send_run(factory, settings, edition, email, now, notes, progress_factory, transport, builder, due) -> SendRun:
    dispatching = None
    if edition is not None:
        ids, had_it = create_edition_rows(factory, edition, now, email)
        with factory() as session:  # rows of this edition left pending by an earlier run
            waiting = select(Delivery.id).where(Delivery.edition == edition, Delivery.status == DeliveryStatus.pending)
            if email is not None:
                waiting = waiting.join(Subscriber, Subscriber.id == Delivery.subscriber_id).where(Subscriber.email == email)
            ids = sorted(set(ids) | set(session.scalars(waiting)))
        if had_it:
            notes.append(f"{had_it} subscriber(s) already had edition {edition}")
        if edition >= now.date():
            notes.append(f"edition {edition} is today's and still open: papers fetched later today go to nobody who got it now")
        batches = _Batches.of(settings, ids)
        total = len(ids)
    else:
        # Rows are created page by page in a thread while the first pages are already being built
        # and sent; the progress total is the count of due subscribers until dispatch has finished.
        with factory() as session:
            edition = latest_closed_edition(session, now)
        batches = dispatching = _Batches.from_dispatch(factory, settings, now)
        total = due

    own = transport is None
    transport = transport or make_transport(settings)
    report = SendReport()
    try:
        with progress_factory(total) if progress_factory else nullcontext() as bar:
            exact = [dispatching is None]

            def advance(**counts):
                if not exact[0] and dispatching.dispatched is not None:  # dispatch is done
                    bar.set_total(dispatching.dispatched.enqueued)
                    exact[0] = True
                bar.advance(**counts)

            report = send_ids(factory, settings, batches, transport, on_progress=advance if bar is not None else None,
                              builder=builder)
    except BaseException:
        if dispatching is not None:
            dispatching.finish(raise_error=False)  # the error that stopped sending goes up, not this one
        raise
    finally:
        if own:
            transport.close()
    if dispatching is not None:
        dispatching.finish()
    if dispatching is not None and dispatching.dispatched is not None:
        edition = dispatching.dispatched.edition or edition
        if dispatching.dispatched.nothing_new:
            notes.append(f"{dispatching.dispatched.nothing_new} due subscriber(s) had no new edition yet")
    if isinstance(transport, OutboxTransport):
        notes.append(f"DIGEST_SMTP_URL is not set: messages were written to {settings.outbox_dir}/ as .eml files")
    return SendRun(report, edition, transport.description, notes)
