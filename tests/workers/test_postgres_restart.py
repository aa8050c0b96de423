"""PostgreSQL stopped in the middle of a send on two Celery workers, then started again: nobody
lost, and no digest twice (issue 13: a fast stop cost 8 duplicates, an immediate one 17; the
outcome in flight and the message just accepted were lost with the connection). The test runs a
PostgreSQL server of its own, so stopping it disturbs nobody else."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.db import make_engine, upgrade
from digest.models import Delivery
from tests.celery_worker import WorkerProcess, unique_queue
from tests.delivery.helpers import LONG_AGO, add_sample_papers
from tests.factories import make_subscriber
from tests.pg_instance import PostgresInstance
from tests.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

FINAL = {"sent", "bounced", "failed", "skipped"}


@pytest.fixture
def own_postgres():
    instance = PostgresInstance().init()
    try:
        yield instance
    finally:
        instance.destroy()


def statuses(engine) -> Counter:
    with Session(engine) as session:
        return Counter(s.value for s in session.scalars(select(Delivery.status)))


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_postgresql_restart_mid_send_loses_nothing_and_sends_nothing_twice(own_postgres, cli_env, tmp_path, mode):
    url = own_postgres.create_database(f"digest_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    upgrade(engine)
    emails = [f"r{n:03d}@example.org" for n in range(400)]
    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        add_sample_papers(session, (now - timedelta(days=1)).date())
        for email in emails:
            make_subscriber(session, email, ["pretraining OR model OR language"], confirmed_at=LONG_AGO,
                            next_due_at=now - timedelta(minutes=1), notify_empty=True)
        session.commit()
    queue = unique_queue()
    with SmtpTestServer() as smtp:
        env = {**cli_env, "DIGEST_DATABASE_URL": url, "DIGEST_SMTP_URL": smtp.url, "DIGEST_SMTP_RATE": "40",
               "DIGEST_FROM": "Papers <digest@papers.test>", "DIGEST_SENDING_TIMEOUT": "20",
               "DIGEST_DATABASE_OUTAGE_WAIT": "60"}
        workers = [WorkerProcess(env, queue, log_path=tmp_path / f"worker{n}.log").start() for n in range(2)]
        try:
            from workers import app

            app.send_task("digest.dispatch", queue=queue).get(timeout=60)
            deadline = time.monotonic() + 60
            while sum(smtp.handler.recipients().values()) < 100 and time.monotonic() < deadline:
                time.sleep(0.01)
            own_postgres.stop(mode)
            time.sleep(3)
            own_postgres.start()
            own_postgres.wait_ready()
            # Beat's dispatch, every few seconds: it sweeps whatever a dead batch left in `sending`.
            deadline = time.monotonic() + 120
            while sum(statuses(engine)[s] for s in FINAL) < len(emails) and time.monotonic() < deadline:
                try:
                    app.send_task("digest.dispatch", queue=queue).get(timeout=60)
                except Exception:  # a dispatch that met the database still recovering
                    pass
                time.sleep(3)
        finally:
            for worker in workers:
                worker.stop()
            engine.dispose()
        received = smtp.handler.recipients()
    assert set(received) == set(emails), statuses(engine)  # nobody lost
    assert sum(received.values()) - len(emails) == 0, {e: n for e, n in received.items() if n > 1}
    assert sum(statuses(engine)[s] for s in FINAL) == len(emails)
