"""The Recorder on PostgreSQL sends each outcome without waiting for the answer. What an operator
relies on: an outcome it was handed is committed even if the process dies at once, and one that
PostgreSQL refuses is not silently dropped."""

from __future__ import annotations

import subprocess
import threading
import uuid
import sys
import time
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.db import make_engine, upgrade
from digest.db import session_factory as make_session_factory
from digest.delivery import Recorder
from digest.models import Delivery, DeliveryStatus
from tests.factories import make_subscriber
from tests.pg_instance import PostgresInstance

pytestmark = pytest.mark.postgres_only

EDITION = date(2026, 11, 25)


def claimed_rows(engine, count: int) -> list[int]:
    with Session(engine) as session, session.begin():
        ids = []
        for n in range(count):
            subscriber = make_subscriber(session, f"rec{n}@example.org")
            delivery = Delivery(subscriber_id=subscriber.id, edition=EDITION, status=DeliveryStatus.sending,
                                claimed_at=datetime.now(timezone.utc), attempts=1)
            session.add(delivery)
            session.flush()
            ids.append(delivery.id)
    return ids


def statuses(engine, ids) -> dict[int, str]:
    with Session(engine) as session:
        return {i: s.value for i, s in session.execute(select(Delivery.id, Delivery.status).where(Delivery.id.in_(ids)))}


def test_outcomes_sent_and_recorded_in_order(committed_db):
    ids = claimed_rows(committed_db, 3)
    record = Recorder(make_session_factory(committed_db))
    try:
        record(ids[0], status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc), message_id="<a@x>",
               paper_ids=["2611.00001", "2611.00002"], last_error=None)
        record(ids[1], status=DeliveryStatus.skipped, paper_ids=[], last_error=None)
        record(ids[2], status=DeliveryStatus.pending, last_error="451 try later",
               next_attempt_at=datetime(2026, 11, 26, 8, tzinfo=timezone.utc))
        record.wait()
    finally:
        record.close()
    with Session(committed_db) as session:
        rows = {d.id: d for d in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}
    assert rows[ids[0]].status == DeliveryStatus.sent and rows[ids[0]].paper_ids == ["2611.00001", "2611.00002"]
    assert rows[ids[0]].message_id == "<a@x>" and rows[ids[0]].sent_at is not None
    assert rows[ids[1]].status == DeliveryStatus.skipped
    assert rows[ids[2]].status == DeliveryStatus.pending and rows[ids[2]].last_error == "451 try later"
    assert rows[ids[2]].next_attempt_at == datetime(2026, 11, 26, 8, tzinfo=timezone.utc)


def test_an_outcome_handed_over_is_committed_even_if_the_process_is_killed_at_once(committed_db):
    ids = claimed_rows(committed_db, 2)
    url = committed_db.url.render_as_string(hide_password=False)
    child = f"""
import os, signal
from datetime import datetime, timezone
from digest.db import make_engine, session_factory
from digest.delivery import Recorder
from digest.models import DeliveryStatus
record = Recorder(session_factory(make_engine({url!r})))
record({ids[0]}, status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc), last_error=None)
record({ids[1]}, status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc), last_error=None)
os.kill(os.getpid(), signal.SIGKILL)  # before reading PostgreSQL's answer to the second
"""
    finished = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert finished.returncode == -9, finished.stderr
    # PostgreSQL finishes what it received; give its backend the moment it needs to notice.
    for _ in range(200):
        if statuses(committed_db, ids) == {ids[0]: "sent", ids[1]: "sent"}:
            break
        time.sleep(0.05)
    assert statuses(committed_db, ids) == {ids[0]: "sent", ids[1]: "sent"}


def test_an_outcome_postgresql_refuses_is_raised_not_lost(committed_db):
    ids = claimed_rows(committed_db, 2)
    record = Recorder(make_session_factory(committed_db))
    try:
        record(ids[0], status=DeliveryStatus.sent, sent_at="not a time")
        with pytest.raises(RuntimeError, match="recording an outcome failed"):
            record.wait()
        # the connection is still good for the next outcome
        record(ids[1], status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc))
        record.wait()
    finally:
        record.close()
    assert statuses(committed_db, ids) == {ids[0]: "sending", ids[1]: "sent"}


def test_an_outcome_for_a_row_no_longer_in_sending_changes_nothing(committed_db):
    ids = claimed_rows(committed_db, 1)
    with committed_db.begin() as connection:  # another worker took it back meanwhile
        connection.execute(update(Delivery).where(Delivery.id == ids[0]).values(status=DeliveryStatus.pending))
    record = Recorder(make_session_factory(committed_db))
    try:
        record(ids[0], status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc))
    finally:
        record.close()
    assert statuses(committed_db, ids) == {ids[0]: "pending"}


@pytest.mark.integration
def test_outcomes_written_before_postgresql_crashed_are_written_again_when_it_is_back(tmp_path):
    """An immediate stop (a crash) forgets commits that synchronous_commit=off had acknowledged
    but not flushed, and cuts the outcome in flight: the Recorder keeps every outcome until a
    synchronous commit made it durable, waits for the server, and writes them again."""
    instance = PostgresInstance().init()
    try:
        engine = make_engine(instance.create_database(f"rec_{uuid.uuid4().hex[:6]}"))
        upgrade(engine)
        ids = claimed_rows(engine, 6)
        record = Recorder(make_session_factory(engine), ids, outage_wait=60)
        for delivery_id in ids[:5]:
            record(delivery_id, status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc), last_error=None)
        instance.stop("immediate")
        threading.Timer(1.0, instance.start).start()
        record(ids[5], status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc), last_error=None)  # waits
        record.confirm()
        record.close()
        assert record.recoveries >= 1
        assert statuses(engine, ids) == {i: "sent" for i in ids}
        engine.dispose()
    finally:
        instance.destroy()


@pytest.mark.integration
def test_outcomes_of_a_confirmed_batch_survive_a_crash_right_after():
    """synchronous_commit=off: PostgreSQL acknowledged them before flushing. Once confirm() has
    returned they are on disk, so a crash the next moment (an immediate stop) forgets none."""
    instance = PostgresInstance().init()
    try:
        engine = make_engine(instance.create_database(f"rec_{uuid.uuid4().hex[:6]}"))
        upgrade(engine)
        ids = claimed_rows(engine, 200)
        record = Recorder(make_session_factory(engine), ids)
        for delivery_id in ids:
            record(delivery_id, status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc), last_error=None)
        record.confirm()
        record.close()
        engine.dispose()
        instance.stop("immediate")
        instance.start()
        instance.wait_ready()
        assert statuses(engine, ids) == {i: "sent" for i in ids}
        engine.dispose()
    finally:
        instance.destroy()


def test_a_confirmed_batch_lets_its_outcomes_go(committed_db):
    ids = claimed_rows(committed_db, 2)
    record = Recorder(make_session_factory(committed_db), ids)
    try:
        record(ids[0], status=DeliveryStatus.sent, sent_at=datetime.now(timezone.utc))
        record(ids[1], status=DeliveryStatus.skipped)
        assert set(record.unconfirmed) == set(ids)  # kept until known to be durable
        record.confirm()
        assert record.unconfirmed == {}
    finally:
        record.close()
    assert statuses(committed_db, ids) == {ids[0]: "sent", ids[1]: "skipped"}
