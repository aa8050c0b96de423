"""/metrics: off by default, a bearer token when one is set, the store's state counted at scrape
time, and the counters of other processes (a real Celery worker and a real `digest send`, each
sending through an SMTP server this test runs) summed in the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import Session

from digest.config import REPO_ROOT, load_settings
from digest.db import make_engine, session_factory as make_session_factory
from digest.models import Delivery, DeliveryStatus, SubscriberStatus, Suppression
from digest.operations.metrics import add_totals
from digest.web import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.celery_worker import running_worker, unique_queue
from tests.delivery.helpers import LONG_AGO, add_sample_papers
from tests.factories import make_paper, make_subscriber
from tests.smtp_server import SmtpTestServer

TOKEN = "s3cret-scrape-token"


def samples(body: str) -> dict[tuple, float]:
    """{(sample name, sorted label pairs): value}, parsed as Prometheus parses the page."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def metrics_app(settings, session_factory, counting):
    def make(**overrides):
        values = {"metrics": True, "metrics_flush_interval": 3600, **overrides}
        return TestClient(create_app(settings.model_copy(update=values), sessions=session_factory), base_url=settings.base_url)

    return make


def test_metrics_are_off_unless_asked_for(client):
    assert client.get("/metrics").status_code == 404


def test_a_token_is_asked_for_as_a_bearer_token_when_set(metrics_app):
    with metrics_app(metrics_token=TOKEN) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert TOKEN not in answer.text
    with metrics_app() as client:  # no token set: an open endpoint (for a private network)
        assert client.get("/metrics").status_code == 200


def test_the_store_is_counted_at_scrape_time_without_an_address(metrics_app, session):
    now = datetime.now(timezone.utc)
    for day, n in ((date(2026, 11, 24), 1), (date(2026, 11, 25), 2), (date(2026, 11, 26), 3), (date(2026, 11, 27), 4)):
        for _ in range(n):
            make_paper(session, edition=day)
    readers = [make_subscriber(session, f"reader{i}@example.org") for i in range(4)]
    make_subscriber(session, "new@example.org", status=SubscriberStatus.pending)
    make_subscriber(session, "left@example.org", status=SubscriberStatus.unsubscribed)
    rows = [("2026-11-26", "sent"), ("2026-11-26", "sent"), ("2026-11-26", "bounced"), ("2026-11-27", "pending"),
            ("2026-11-27", "failed"), ("2026-11-24", "sent")]
    for reader, (edition, status) in zip(readers * 2, rows):
        session.add(Delivery(subscriber_id=reader.id, edition=date.fromisoformat(edition), status=DeliveryStatus(status),
                             created_at=now - timedelta(minutes=20)))
    session.add(Suppression(email="gone@example.org", reason="bounced: 550 5.1.1 <gone@example.org>"))
    session.flush()

    with metrics_app() as client:
        body = client.get("/metrics").text
    found = samples(body)
    assert found[("digest_subscribers", (("status", "active"),))] == 4
    assert found[("digest_subscribers", (("status", "pending"),))] == 1
    assert found[("digest_subscribers", (("status", "unsubscribed"),))] == 1
    assert found[("digest_edition_papers", (("edition", "2026-11-27"),))] == 4
    assert ("digest_edition_papers", (("edition", "2026-11-24"),)) not in found  # the newest 3 editions only
    assert found[("digest_edition_deliveries", (("edition", "2026-11-26"), ("status", "sent")))] == 2
    assert found[("digest_edition_deliveries", (("edition", "2026-11-26"), ("status", "bounced")))] == 1
    assert found[("digest_edition_deliveries", (("edition", "2026-11-27"), ("status", "failed")))] == 1
    assert found[("digest_edition_deliveries", (("edition", "2026-11-25"), ("status", "sent")))] == 0
    assert found[("digest_suppressed_addresses", ())] == 1
    assert 20 * 60 - 5 <= found[("digest_oldest_due_seconds", ())] <= 20 * 60 + 120  # the pending row of 20 min ago
    assert "@" not in body and "example.org" not in body


def test_an_active_subscriber_past_due_with_no_row_is_late_too(metrics_app, session):
    make_subscriber(session, "ana@example.org", next_due_at=datetime.now(timezone.utc) - timedelta(hours=2))
    make_subscriber(session, "bo@example.org", next_due_at=datetime.now(timezone.utc) + timedelta(hours=2))
    with metrics_app() as client:
        oldest = samples(client.get("/metrics").text)[("digest_oldest_due_seconds", ())]
    assert 2 * 3600 - 5 <= oldest <= 2 * 3600 + 120


def test_nothing_due_reads_zero(metrics_app):
    with metrics_app() as client:
        assert samples(client.get("/metrics").text)[("digest_oldest_due_seconds", ())] == 0


def test_totals_add_up_deltas_from_several_processes(session):
    """What two processes handed over is summed, histogram buckets included."""
    add_totals(session, {("digest_delivery_outcomes_total", '{"outcome":"sent"}'): 3.0,
                         ("digest_smtp_send_seconds_sum", ""): 0.25})
    add_totals(session, {("digest_delivery_outcomes_total", '{"outcome":"sent"}'): 2.0,
                         ("digest_smtp_send_seconds_sum", ""): 0.5})
    totals = dict(session.execute(text("SELECT name, value FROM metric_totals")).all())
    assert totals == {"digest_delivery_outcomes_total": 5.0, "digest_smtp_send_seconds_sum": 0.75}


def test_this_process_counts_a_refused_subscribe_and_shows_it_at_once(metrics_app, limiter):
    limiter.limit = 1
    with metrics_app() as client:
        client.app.state.limiter = limiter
        before = samples(client.get("/metrics").text).get(("digest_subscribe_rate_limited_total", ()), 0)
        for _ in range(3):
            client.post("/subscribe", data={"email": "x@example.org", "topics": "diffusion"})
        after = samples(client.get("/metrics").text)[("digest_subscribe_rate_limited_total", ())]
    assert after - before == 2


# ---------------------------------------------------------------- across processes


def sent_by(found: dict) -> float:
    return found.get(("digest_delivery_outcomes_total", (("outcome", "sent"),)), 0)


def scrape_until(client: TestClient, check, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = samples(client.get("/metrics").text)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def add_due_reader(engine, email: str) -> None:
    with Session(engine) as session:
        make_subscriber(session, email, ["pretraining"], confirmed_at=LONG_AGO,
                        next_due_at=datetime.now(timezone.utc) - timedelta(minutes=1))
        session.commit()


@pytest.mark.integration
@pytest.mark.postgres_only
def test_metrics_count_a_send_by_a_celery_worker_and_one_by_digest_send(cli_env, committed_db, database_url, tmp_path,
                                                                         counting):
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    with Session(committed_db) as session:
        add_sample_papers(session, yesterday)
        session.commit()
    with SmtpTestServer() as smtp:
        env = {**cli_env, "DIGEST_SMTP_URL": smtp.url, "DIGEST_FROM": "Papers <digest@papers.test>",
               "DIGEST_SMTP_RATE": "1000", "DIGEST_METRICS": "1", "DIGEST_METRICS_FLUSH_INTERVAL": "0.5"}
        settings = load_settings(database_url=database_url, metrics=True, metrics_flush_interval=3600,
                                 secret_key=TEST_SECRET_KEY)
        engine = make_engine(database_url)
        web = TestClient(create_app(settings, sessions=make_session_factory(engine)))
        assert sent_by(samples(web.get("/metrics").text)) == 0

        add_due_reader(committed_db, "by-worker@example.org")
        queue = unique_queue()
        with running_worker(env, queue, log_path=tmp_path / "worker.log"):
            from workers import app as celery_app

            assert celery_app.send_task("digest.dispatch", queue=queue).get(timeout=60)["created"] == 1
            after_worker = scrape_until(web, lambda found: sent_by(found) >= 1)
        assert sent_by(after_worker) == 1
        assert smtp.handler.recipients() == {"by-worker@example.org": 1}

        add_due_reader(committed_db, "by-command@example.org")
        command = subprocess.run([sys.executable, "-m", "digest.cli", "send"], cwd=REPO_ROOT, env={**os.environ, **env},
                                 capture_output=True, text=True, timeout=120)
        assert command.returncode == 0, command.stderr
        assert "sent: 1" in command.stdout
        found = samples(web.get("/metrics").text)
        engine.dispose()
    assert smtp.handler.recipients() == {"by-worker@example.org": 1, "by-command@example.org": 1}
    assert sent_by(found) == 2
    assert found[("digest_smtp_replies_total", (("class", "2xx"),))] == 2
    assert found[("digest_smtp_send_seconds_count", ())] == 2
    assert found[("digest_smtp_send_seconds_bucket", (("le", "+Inf"),))] == 2
    assert found[("digest_edition_deliveries", (("edition", yesterday.isoformat()), ("status", "sent")))] == 2
