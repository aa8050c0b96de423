"""Delivery faults through real processes: a Celery worker subprocess on the real Redis, the
test's PostgreSQL database, and an SMTP server this test runs (aiosmtpd with fault rules)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.config import load_settings
from digest.db import session_factory as make_session_factory
from digest.delivery import dispatch
from digest.models import Delivery, DeliveryStatus, Subscriber, Suppression
from tests.celery_worker import WorkerProcess, running_worker, unique_queue
from tests.delivery.helpers import LONG_AGO, add_sample_papers
from tests.factories import make_subscriber
from tests.smtp_server import RcptRule, SmtpTestServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

FINAL = (DeliveryStatus.sent, DeliveryStatus.bounced, DeliveryStatus.failed, DeliveryStatus.skipped)


def today() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def env(cli_env, smtp):
    return {
        **cli_env,
        "DIGEST_SMTP_URL": smtp.url,
        "DIGEST_FROM": "Papers <digest@papers.test>",
        "DIGEST_SMTP_RETRY_DELAY": "0.2",
        "DIGEST_SMTP_RATE": "1000",
    }


def populate(engine, emails: list[str], days_ago: int = 1, papers: slice = slice(None)) -> None:
    """Papers in a closed edition and subscribers whose hour has come."""
    with Session(engine) as session:
        add_sample_papers(session, (today() - timedelta(days=days_ago)).date(), papers.start or 0, papers.stop)
        for email in emails:
            make_subscriber(session, email, ["pretraining", "model"], confirmed_at=LONG_AGO,
                            next_due_at=today() - timedelta(minutes=1))
        session.commit()


def make_due_again(engine) -> None:
    with Session(engine) as session:
        session.execute(Subscriber.__table__.update().values(next_due_at=today() - timedelta(minutes=1)))
        session.commit()


def forget_queue(broker_url: str, queue: str) -> None:
    """Remove this run's queue and the killed worker's unacknowledged task from the shared Redis
    (kombu keeps it in the `unacked` hash to restore after the visibility timeout)."""
    import json

    import redis

    client = redis.Redis.from_url(broker_url)
    client.delete(queue)
    for tag, value in client.hgetall("unacked").items():
        try:
            routing_key = json.loads(value)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


def run_dispatch(queue: str) -> dict:
    from workers import app

    return app.send_task("digest.dispatch", queue=queue).get(timeout=60)


def wait_until_final(engine, expected: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            statuses = Counter(s.value for s in session.scalars(select(Delivery.status)))
        if sum(statuses[s.value] for s in FINAL) >= expected:
            return dict(statuses)
        time.sleep(0.2)
    raise AssertionError(f"deliveries not final after {timeout} s: {dict(statuses)}")


def test_451_once_the_subscriber_receives_exactly_one_digest(env, committed_db, smtp, tmp_path):
    emails = [f"r{n}@example.org" for n in range(5)] + ["grey@example.org"]
    populate(committed_db, emails)
    smtp.faults.rcpt.append(RcptRule("grey@example.org", "451 4.7.1 Greylisted, come back later", times=1))
    queue = unique_queue()
    with running_worker(env, queue, log_path=tmp_path / "worker.log"):
        assert run_dispatch(queue)["created"] == 6
        statuses = wait_until_final(committed_db, 6)
    assert statuses == {"sent": 6}
    assert smtp.handler.recipients() == {email: 1 for email in emails}


def test_550_bounces_suppresses_and_is_not_tried_at_the_next_edition(env, committed_db, smtp, tmp_path):
    emails = ["ana@example.org", "gone@example.org", "bo@example.org"]
    populate(committed_db, emails, days_ago=2, papers=slice(0, 50))
    smtp.faults.rcpt.append(RcptRule("gone@example.org", "550 5.1.1 User unknown"))
    queue = unique_queue()
    with running_worker(env, queue, log_path=tmp_path / "worker.log"):
        run_dispatch(queue)
        assert wait_until_final(committed_db, 3) == {"sent": 2, "bounced": 1}
        # The next edition: everyone due again, the bounced address is not even tried.
        populate(committed_db, [], days_ago=1, papers=slice(50, None))
        make_due_again(committed_db)
        assert run_dispatch(queue)["created"] == 2
        wait_until_final(committed_db, 5)
    assert smtp.handler.recipients() == {"ana@example.org": 2, "bo@example.org": 2}
    with Session(committed_db) as session:
        assert session.get(Suppression, "gone@example.org") is not None


def test_a_dropped_connection_mid_batch_completes_after_reconnecting(env, committed_db, smtp, tmp_path):
    emails = [f"r{n}@example.org" for n in range(10)]
    populate(committed_db, emails)
    smtp.faults.drop_on_data.add(4)
    smtp.faults.drop_after_accept_on_data.add(7)  # the 250 is lost: the one message that may come twice
    queue = unique_queue()
    with running_worker(env, queue, log_path=tmp_path / "worker.log"):
        run_dispatch(queue)
        assert wait_until_final(committed_db, 10) == {"sent": 10}
    received = smtp.handler.recipients()
    assert set(received) == set(emails)  # no loss
    assert sum(received.values()) - len(emails) <= 1  # at most the message in flight
    assert smtp.handler.connections == 3


def test_a_worker_killed_mid_batch_is_recovered_after_the_sending_timeout(env, committed_db, smtp, tmp_path):
    emails = [f"r{n:02d}@example.org" for n in range(20)]
    populate(committed_db, emails)
    smtp.faults.data_delay = 0.25  # slow server: the batch takes about 5 s
    env = {**env, "DIGEST_SENDING_TIMEOUT": "3"}
    queue = unique_queue()
    worker = WorkerProcess(env, queue, log_path=tmp_path / "worker.log").start()
    try:
        run_dispatch(queue)
        deadline = time.monotonic() + 30
        while sum(smtp.handler.recipients().values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.kill()  # SIGKILL mid-batch
        killed_at = sum(smtp.handler.recipients().values())
        assert 5 <= killed_at < 20
        with Session(committed_db) as session:
            stuck = session.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.sending))
        assert stuck > 0
        smtp.faults.data_delay = 0.0
        worker = WorkerProcess(env, queue, log_path=tmp_path / "worker.log").start()
        time.sleep(3.5)  # the sending timeout passes; the next beat tick's dispatch takes the rows back
        assert run_dispatch(queue)["requeued"] >= stuck
        assert wait_until_final(committed_db, 20) == {"sent": 20}
    finally:
        worker.stop()
        forget_queue(env["DIGEST_BROKER_URL"], queue)
    received = smtp.handler.recipients()
    assert set(received) == set(emails)  # every due subscriber got the digest
    assert sum(received.values()) - len(emails) <= 1  # duplicates: at most the message in flight


def test_redis_unreachable_at_dispatch_fails_loudly_and_the_next_run_catches_up(env, committed_db, smtp, tmp_path):
    emails = [f"r{n}@example.org" for n in range(4)]
    populate(committed_db, emails)
    settings = load_settings(database_url=env["DIGEST_DATABASE_URL"], broker_url=env["DIGEST_BROKER_URL"])
    factory = make_session_factory(committed_db)
    queue = unique_queue()
    dead = Celery("dead", broker="redis://127.0.0.1:1/0")
    dead.conf.broker_connection_timeout = 1
    with pytest.raises(Exception) as failure:
        dispatch(factory, settings, lambda ids: dead.send_task("digest.send_batch", args=[ids], queue=queue, retry=False))
    assert "Connection refused" in str(failure.value) or "Error" in type(failure.value).__name__
    with Session(committed_db) as session:
        assert session.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.pending)) == 4
    from workers import app

    with running_worker(env, queue, log_path=tmp_path / "worker.log"):
        report = dispatch(factory, settings, lambda ids: app.send_task("digest.send_batch", args=[ids], queue=queue))
        assert report.created == 0 and report.requeued == 4
        assert wait_until_final(committed_db, 4) == {"sent": 4}
    assert smtp.handler.recipients() == {email: 1 for email in emails}


def test_two_dispatch_runs_at_the_same_time_send_no_digest_twice(env, committed_db, smtp, tmp_path):
    emails = [f"r{n:03d}@example.org" for n in range(120)]
    populate(committed_db, emails)
    queue = unique_queue()
    with running_worker(env, queue, concurrency=3, log_path=tmp_path / "worker.log"):
        from workers import app

        results = [app.send_task("digest.dispatch", queue=queue) for _ in range(2)]
        # and a third from another process's point of view: this test process, at the same moment
        settings = load_settings(database_url=env["DIGEST_DATABASE_URL"], broker_url=env["DIGEST_BROKER_URL"],
                                 batch_size=50)
        local = threading.Thread(target=dispatch, args=(
            make_session_factory(committed_db), settings,
            lambda ids: app.send_task("digest.send_batch", args=[ids], queue=queue)))
        local.start()
        local.join(60)
        created = sum(r.get(timeout=60)["created"] for r in results)
        assert wait_until_final(committed_db, 120) == {"sent": 120}
    assert created <= 120
    assert smtp.handler.recipients() == {email: 1 for email in emails}


def test_an_smtp_server_back_after_a_short_outage_gets_the_digests_without_another_dispatch(
    env, committed_db, smtp, tmp_path
):
    """Issue 13: the digests used to wait for the 5-minute back-off and the next dispatch."""
    emails = [f"r{n:02d}@example.org" for n in range(30)]
    populate(committed_db, emails)
    env = {**env, "DIGEST_SMTP_RATE": "20", "DIGEST_SMTP_OUTAGE_RETRY": "0.5", "DIGEST_BATCH_SIZE": "10"}
    queue = unique_queue()
    with running_worker(env, queue, log_path=tmp_path / "worker.log"):
        run_dispatch(queue)  # the only dispatch of this test
        deadline = time.monotonic() + 30
        while sum(smtp.handler.recipients().values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        smtp.go_away()
        time.sleep(3)
        smtp.come_back()
        assert wait_until_final(committed_db, 30, timeout=60) == {"sent": 30}
    received = smtp.handler.recipients()
    assert set(received) == set(emails)
    assert sum(received.values()) - len(emails) <= 1  # a drop after a 250 costs at most that one


def test_an_outage_longer_than_the_wait_is_retried_by_the_task_soon(env, committed_db, smtp, tmp_path):
    emails = [f"r{n}@example.org" for n in range(4)]
    populate(committed_db, emails)
    env = {**env, "DIGEST_SMTP_OUTAGE_WAIT": "1", "DIGEST_SMTP_OUTAGE_RETRY": "1"}
    queue = unique_queue()
    smtp.go_away()
    with running_worker(env, queue, log_path=tmp_path / "worker.log"):
        run_dispatch(queue)
        time.sleep(4)  # the task waited 1 s, left the rows pending and retries every second or so
        with Session(committed_db) as session:
            assert set(session.scalars(select(Delivery.status))) <= {DeliveryStatus.pending, DeliveryStatus.sending}
        smtp.come_back()
        assert wait_until_final(committed_db, 4, timeout=30) == {"sent": 4}
    assert smtp.handler.recipients() == {email: 1 for email in emails}
