"""Who is due, and the rows that say so: dispatch, sweep, and the rows of `send --edition`.

`dispatch`: one keyset-paged query picks active subscribers whose `next_due_at` has come; for each
page, one transaction creates their delivery rows (unique subscriber + edition, so two dispatch
runs never make two) and advances `next_due_at`; after the commit, the new row ids go to `enqueue`
in chunks of `batch_size`. It then sweeps: rows whose retry time has come and rows stuck in
`sending` longer than `sending_timeout` (their worker died) are enqueued again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.delivery import ledger
from digest.delivery.ledger import SessionFactory, chunks
from digest.delivery.windows import has_news, utcnow, window_start
from digest.editions import latest_closed_edition
from digest.models import DeliveryStatus, Subscriber, SubscriberStatus
from digest.schedule import next_due_at

log = logging.getLogger(__name__)

Enqueue = Callable[[list[int]], None]

DISPATCH_PAGE = 1000

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


def _enqueue_committed(
    factory: SessionFactory, ids: list[int], enqueue: Enqueue, settings: Settings, report: DispatchReport
) -> None:
    """Hand committed row ids to the queue. If the broker refuses, the rows are made due for the
    next run at once (they stay pending: nothing is lost) and the error goes up, loudly."""
    done = 0
    try:
        for chunk in chunks(ids, settings.batch_size):
            enqueue(chunk)
            done += len(chunk)
            report.enqueued += len(chunk)
            report.ids.extend(chunk)
    except Exception:
        try:
            ledger.release(factory, ids[done:], held=DeliveryStatus.pending)
        except Exception:  # the next sweep finds them after sending_timeout anyway
            log.exception("could not mark %d unqueued deliveries for the next run", len(ids) - done)
        raise


def _due_page(session: Session, now: datetime, after: int, page_size: int) -> list:
    return list(
        session.execute(
            select(*_SCHEDULE_COLUMNS)
            .where(Subscriber.status == SubscriberStatus.active, Subscriber.next_due_at <= now, Subscriber.id > after)
            .order_by(Subscriber.id)
            .limit(page_size)
        )
    )


def _dispatch_page(session: Session, page: list, report: DispatchReport, now: datetime, requeue_at: datetime) -> list[int]:
    """Rows for the page's subscribers who have news, next due times for all of them."""
    latest = ledger.newest_editions(session, [s.id for s in page])
    suppressed = ledger.suppressed(session, (s.email for s in page))
    rows = []
    for subscriber in page:
        if subscriber.email in suppressed:
            report.suppressed += 1
        elif not has_news(subscriber, report.edition, latest.get(subscriber.id)):
            report.nothing_new += 1
        else:
            rows.append(ledger.pending_row(subscriber.id, report.edition, now, requeue_at))
    created = ledger.insert_ignoring_duplicates(session, rows)
    ledger.advance_due_times(session, [(s.id, s.next_due_at, next_due_at(s, now)) for s in page])
    return created


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
            page = _due_page(session, now, after, page_size)
            if not page:
                break
            after = page[-1].id
            report.due += len(page)
            created = _dispatch_page(session, page, report, now, requeue_at)
            report.created += len(created)
        # Committed: only now may a worker see these ids.
        _enqueue_committed(factory, created, enqueue, settings, report)
        if created and not statistics_checked:
            statistics_checked = True
            ledger.refresh_statistics_if_stale(factory, report.created)

    requeued = sweep(factory, settings, now)
    report.requeued = len(requeued)
    _enqueue_committed(factory, requeued, enqueue, settings, report)
    log.info(
        "dispatch: edition %s, %d due, %d new deliveries, %d with nothing new, %d suppressed, %d re-enqueued",
        report.edition, report.due, report.created, report.nothing_new, report.suppressed, report.requeued,
    )
    return report


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
            ledger.set_first_due_times(session, [(s.id, next_due_at(s, now)) for s in page])
            done += len(page)


def sweep(factory: SessionFactory, settings: Settings, now: datetime) -> list[int]:
    """The rows that need a task again (a retry due, a lost enqueue, a dead worker's claim)."""
    with factory() as session, session.begin():
        return ledger.take_due_again(session, now, settings.sending_timeout)


def create_edition_rows(
    factory: SessionFactory,
    edition: date,
    now: datetime | None = None,
    email: str | None = None,
    page_size: int = DISPATCH_PAGE,
) -> tuple[list[int], int]:
    """`digest send --edition D [--to EMAIL]`: a row for edition D for every active subscriber
    (or one) who has not had it, whatever their hour. Returns (new row ids, how many already had
    it). A row of D that an earlier run left pending or sending is neither: `unfinished_ids` has it."""
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
            latest = ledger.newest_editions(session, [s.id for s in page])
            unfinished = ledger.unfinished_subscribers(session, [s.id for s in page], edition)
            rows = []
            for subscriber in page:
                if subscriber.id in unfinished:
                    continue
                previous = latest.get(subscriber.id)
                # Windows are contiguous: a row at D or later means D was covered already.
                if previous is not None and previous >= edition:
                    had_it += 1
                    continue
                if window_start(subscriber, edition, previous) > edition and email is None:
                    had_it += 1  # subscribed after this edition
                    continue
                rows.append(ledger.pending_row(subscriber.id, edition, now, now + timedelta(hours=1)))
            created.extend(ledger.insert_ignoring_duplicates(session, rows))
    return created, had_it
