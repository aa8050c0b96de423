"""dispatch: who is due, one row per subscriber and edition, next_due_at advanced, ids enqueued;
and the sweep that re-enqueues rows waiting for a retry or stuck in `sending`."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from digest.delivery import dispatch, sweep, window_start
from digest.models import Delivery, DeliveryStatus, Frequency, Subscriber, SubscriberStatus, Suppression
from tests.factories import make_paper, make_subscriber

UTC = timezone.utc
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # edition 2026-11-26 is closed, 2026-11-27 is open
EDITION = date(2026, 11, 26)
LONG_AGO = datetime(2026, 10, 1, tzinfo=UTC)


def due_subscriber(session, **fields):
    fields.setdefault("confirmed_at", LONG_AGO)
    fields.setdefault("next_due_at", NOW - timedelta(minutes=1))
    return make_subscriber(session, **fields)


def rows(session, subscriber=None):
    query = select(Delivery).order_by(Delivery.id)
    if subscriber is not None:
        query = query.where(Delivery.subscriber_id == subscriber.id)
    session.expire_all()
    return list(session.scalars(query))


class Queue:
    def __init__(self, fail: bool = False):
        self.batches: list[list[int]] = []
        self.fail = fail

    def __call__(self, ids):
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.batches.append(list(ids))


@pytest.fixture
def editions(session):
    make_paper(session, edition=date(2026, 11, 25))
    make_paper(session, edition=EDITION)
    make_paper(session, edition=date(2026, 11, 27))  # today's, still open


def test_due_subscribers_get_one_row_for_the_newest_closed_edition(session, session_factory, settings, editions):
    due = [due_subscriber(session) for _ in range(3)]
    later = due_subscriber(session, next_due_at=NOW + timedelta(hours=2))
    paused = due_subscriber(session, status=SubscriberStatus.unsubscribed)
    queue = Queue()
    session.commit()
    report = dispatch(session_factory, settings, queue, now=NOW)
    assert report.edition == EDITION and report.created == 3
    created = rows(session)
    assert [(r.subscriber_id, r.edition, r.status) for r in created] == [
        (s.id, EDITION, DeliveryStatus.pending) for s in due
    ]
    assert sum(queue.batches, []) == [r.id for r in created]
    assert not rows(session, later) and not rows(session, paused)
    for subscriber in due:
        assert session.get(Subscriber, subscriber.id).next_due_at == datetime(2026, 11, 28, 7, tzinfo=UTC)  # 07:00 UTC tomorrow


def test_ids_are_enqueued_in_batches_of_batch_size(session, session_factory, settings, editions):
    for _ in range(5):
        due_subscriber(session)
    session.commit()
    queue = Queue()
    dispatch(session_factory, settings.model_copy(update={"batch_size": 2}), queue, now=NOW, page_size=3)
    assert [len(b) for b in queue.batches] == [2, 1, 2]  # pages of 3 subscribers, chunks of 2


def test_running_twice_creates_nothing_twice(session, session_factory, settings, editions):
    subscriber = due_subscriber(session)
    session.commit()
    first, second = Queue(), Queue()
    dispatch(session_factory, settings, first, now=NOW)
    # Even if the second run still saw the subscriber as due (it read before the first committed):
    session.execute(
        Subscriber.__table__.update().where(Subscriber.id == subscriber.id).values(next_due_at=NOW - timedelta(minutes=1))
    )
    session.commit()
    report = dispatch(session_factory, settings, second, now=NOW + timedelta(minutes=5))
    assert report.created == 0 and second.batches == []
    assert len(rows(session, subscriber)) == 1


def test_nothing_new_advances_without_a_row(session, session_factory, settings, editions):
    # Confirmed today: the newest closed edition is from before they subscribed.
    fresh = due_subscriber(session, confirmed_at=datetime(2026, 11, 27, 6, tzinfo=UTC))
    had_it = due_subscriber(session)
    session.add(Delivery(subscriber_id=had_it.id, edition=EDITION, status=DeliveryStatus.sent))
    session.commit()
    report = dispatch(session_factory, settings, Queue(), now=NOW)
    assert report.created == 0 and report.nothing_new == 2
    assert not rows(session, fresh) and len(rows(session, had_it)) == 1
    assert session.get(Subscriber, fresh.id).next_due_at > NOW


def test_suppressed_addresses_get_no_row(session, session_factory, settings, editions):
    subscriber = due_subscriber(session, email="gone@example.org")
    session.add(Suppression(email="gone@example.org", reason="bounced: 550"))
    session.commit()
    report = dispatch(session_factory, settings, Queue(), now=NOW)
    assert report.suppressed == 1 and not rows(session, subscriber)


def test_broker_down_fails_loudly_and_the_next_run_catches_up(session, session_factory, settings, editions):
    subscribers = [due_subscriber(session) for _ in range(3)]
    session.commit()
    with pytest.raises(ConnectionError):
        dispatch(session_factory, settings, Queue(fail=True), now=NOW)
    kept = rows(session)
    assert [r.subscriber_id for r in kept] == [s.id for s in subscribers]  # committed, nothing lost
    assert all(r.status == DeliveryStatus.pending and r.next_attempt_at is None for r in kept)
    queue = Queue()
    report = dispatch(session_factory, settings, queue, now=NOW + timedelta(minutes=5))
    assert report.created == 0 and sorted(sum(queue.batches, [])) == [r.id for r in kept]


def test_sweep_takes_back_rows_whose_worker_died_and_rows_due_for_a_retry(session, session_factory, settings, editions):
    a, b, c, d = (due_subscriber(session) for _ in range(4))
    stale = Delivery(subscriber_id=a.id, edition=EDITION, status=DeliveryStatus.sending,
                     claimed_at=NOW - timedelta(seconds=settings.sending_timeout + 1))
    busy = Delivery(subscriber_id=b.id, edition=EDITION, status=DeliveryStatus.sending, claimed_at=NOW - timedelta(seconds=5))
    retry_now = Delivery(subscriber_id=c.id, edition=EDITION, status=DeliveryStatus.pending,
                         next_attempt_at=NOW - timedelta(seconds=1), attempts=1)
    retry_later = Delivery(subscriber_id=d.id, edition=EDITION, status=DeliveryStatus.pending,
                           next_attempt_at=NOW + timedelta(minutes=10), attempts=1)
    session.add_all([stale, busy, retry_now, retry_later])
    session.commit()
    assert sorted(sweep(session_factory, settings, NOW)) == sorted([stale.id, retry_now.id])
    assert sweep(session_factory, settings, NOW + timedelta(seconds=1)) == [stale.id]  # the retry is not re-sent twice


def test_weekly_window_covers_the_week_and_daily_catches_up_at_most_a_week():
    weekly = Subscriber(frequency=Frequency.weekly, confirmed_at=LONG_AGO, created_at=LONG_AGO)
    assert window_start(weekly, EDITION, date(2026, 11, 19)) == date(2026, 11, 20)
    assert window_start(weekly, EDITION, None) == date(2026, 11, 13)
    daily = Subscriber(frequency=Frequency.daily, confirmed_at=LONG_AGO, created_at=LONG_AGO)
    assert window_start(daily, EDITION, date(2026, 11, 25)) == EDITION
    assert window_start(daily, EDITION, date(2026, 11, 1)) == date(2026, 11, 20)
    late = Subscriber(frequency=Frequency.daily, confirmed_at=datetime(2026, 11, 26, 23, tzinfo=UTC))
    assert window_start(late, EDITION, None) == EDITION


def test_active_subscribers_without_a_due_time_get_their_next_hour_not_a_digest(session, session_factory, settings, editions):
    unscheduled = due_subscriber(session, next_due_at=None, timezone="Asia/Tokyo")
    session.commit()
    report = dispatch(session_factory, settings, Queue(), now=NOW)
    assert report.scheduled == 1 and report.created == 0
    # 07:00 in Tokyo after 08:00 UTC on the 27th is 22:00 UTC that day.
    assert session.get(Subscriber, unscheduled.id).next_due_at == datetime(2026, 11, 27, 22, tzinfo=UTC)


@pytest.mark.postgres_only
def test_the_first_dispatch_after_install_leaves_no_statistics_of_an_empty_table(committed_db, settings):
    """PostgreSQL plans a batch's claim, load and outcomes from the table's statistics; taken
    while the table was empty they make it scan the whole edition's rows for each batch."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from digest.db import session_factory

    with Session(committed_db) as session:
        make_paper(session, edition=EDITION)
        for n in range(30):
            due_subscriber(session, email=f"s{n}@example.org")
        session.commit()
    with committed_db.connect() as connection:
        connection.execute(text("ANALYZE deliveries"))  # as autovacuum left it on a new install: empty
        connection.commit()

    def known_rows() -> float:
        with committed_db.connect() as connection:
            return connection.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass"))

    assert known_rows() == 0
    report = dispatch(session_factory(committed_db), settings, Queue(), now=NOW)
    assert report.created == 30
    assert known_rows() == 30


@pytest.mark.postgres_only
def test_the_first_dispatch_after_install_analyzes_a_table_never_analyzed(committed_db, settings):
    """Never analyzed (before autovacuum's first pass), PostgreSQL knows the table's size but not
    how many rows are pending: it guesses a few, and plans each claim as a scan of every pending
    row through the status index. Dispatch analyzes it once the first rows exist."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from digest.db import session_factory

    with Session(committed_db) as session:
        make_paper(session, edition=EDITION)
        for n in range(30):
            due_subscriber(session, email=f"s{n}@example.org")
        session.commit()
    with committed_db.connect() as connection:  # as on a new install: no statistics at all
        connection.execute(text("UPDATE pg_class SET reltuples = -1 WHERE oid = 'deliveries'::regclass"))
        connection.commit()

    def known_rows() -> float:
        with committed_db.connect() as connection:
            return connection.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass"))

    assert known_rows() == -1
    report = dispatch(session_factory(committed_db), settings, Queue(), now=NOW)
    assert report.created == 30
    assert known_rows() == 30
