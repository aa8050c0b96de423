"""`digest send` on a real PostgreSQL engine builds the next batch in a second process while it
sends the current one. What an operator would check: everyone gets one digest; a run that stops
early leaves nothing stuck in `sending`."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import parse_smtp_url
from digest.db import session_factory
from digest.delivery import send_now
from digest.delivery.runner import _Builder
from digest.mail import SmtpTransport
from digest.models import Delivery, DeliveryStatus, Subscriber
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.smtp_server import SmtpTestServer

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the builder process needs a second CPU"),
]

EMAILS = [f"reader{n}@example.org" for n in range(7)]


@pytest.fixture
def server():
    running = SmtpTestServer()
    running.controller.start()
    yield running
    if running.controller._thread is not None:  # one test stops it itself
        running.controller.stop()


@pytest.fixture
def store(committed_db, settings, server):
    with Session(committed_db) as session:
        add_sample_papers(session, EDITION)
        for email in EMAILS:
            due_subscriber(session, email, ["pretraining OR diffusion OR speech OR language"], notify_empty=True)
        session.commit()
    configured = settings.model_copy(update={"smtp_url": server.url, "batch_size": 2, "smtp_retry_delay": 0.01})
    factory = session_factory(committed_db)
    builder = _Builder.start(factory, configured)
    assert builder is not None  # the path under test
    builder.close()
    return factory, configured


def rows(engine) -> dict[str, DeliveryStatus]:
    with Session(engine) as session:
        return dict(session.execute(
            select(Subscriber.email, Delivery.status).join(Delivery, Delivery.subscriber_id == Subscriber.id)
        ).all())


def test_batches_built_ahead_reach_everyone_once(committed_db, store, server):
    factory, configured = store
    run = send_now(factory, configured, edition=EDITION)
    assert run.report.sent == len(EMAILS)
    assert server.handler.recipients() == {email: 1 for email in EMAILS}
    assert set(rows(committed_db).values()) == {DeliveryStatus.sent}
    # Each message is the subscriber's own: addressed to them, with their unsubscribe link.
    for email in EMAILS:
        message = server.handler.messages_for(email)[0]
        assert message["To"] == email and "/unsubscribe/" in message["List-Unsubscribe"]


def test_a_run_whose_server_goes_away_leaves_the_batch_claimed_ahead_pending(committed_db, store, server):
    factory, configured = store

    class ServerStopsAfterThree(SmtpTransport):
        sends = 0

        def send(self, *args, **kwargs):
            ServerStopsAfterThree.sends += 1
            if ServerStopsAfterThree.sends == 4:
                server.controller.stop()
                self._drop()
            return super().send(*args, **kwargs)

    transport = ServerStopsAfterThree(parse_smtp_url(configured.smtp_url), timeout=5)
    configured = configured.model_copy(update={"smtp_outage_wait": 0.5})  # waits that long, then stops
    run = send_now(factory, configured, edition=EDITION, transport=transport)
    transport.close()
    assert run.report.sent == 3 and run.report.errors
    statuses = rows(committed_db)
    # Nothing waits for the sending timeout: the batch being sent and the one claimed ahead are
    # both pending again, due at the next run; the three accepted are recorded as sent.
    assert DeliveryStatus.sending not in statuses.values()
    assert sorted(statuses.values()).count(DeliveryStatus.sent) == 3
    assert len(statuses) == len(EMAILS)
    assert sum(server.handler.recipients().values()) == 3


def test_a_due_run_sends_while_dispatch_is_still_creating_rows(committed_db, store, server, monkeypatch):
    from digest.delivery import due

    factory, configured = store
    real_dispatch = due.dispatch
    monkeypatch.setattr(due, "dispatch", lambda *a, **k: real_dispatch(*a, **{**k, "page_size": 3}))
    run = send_now(factory, configured, now=NOW)
    assert run.report.sent == len(EMAILS) and run.edition == EDITION
    assert server.handler.recipients() == {email: 1 for email in EMAILS}
    assert send_now(factory, configured, now=NOW).report.sent == 0  # nobody twice


def test_a_dispatch_failing_midway_sends_what_it_committed_then_says_so(committed_db, store, server, monkeypatch):
    from digest.delivery import due, ledger

    factory, configured = store
    real_dispatch, real_advance = due.dispatch, ledger.advance_due_times
    pages = []

    def advance_then_lose_the_database(session, changes):
        pages.append(changes)
        if len(pages) == 2:
            raise RuntimeError("the database went away")
        real_advance(session, changes)

    monkeypatch.setattr(due, "dispatch", lambda *a, **k: real_dispatch(*a, **{**k, "page_size": 3}))
    monkeypatch.setattr(ledger, "advance_due_times", advance_then_lose_the_database)
    with pytest.raises(RuntimeError, match="the database went away"):
        send_now(factory, configured, now=NOW)
    # The first page was committed: its three subscribers have their digest; the second page
    # rolled back whole (no rows, next_due_at untouched), so nothing is stuck or half-done.
    assert server.handler.recipients() == {email: 1 for email in EMAILS[:3]}
    assert set(rows(committed_db).values()) == {DeliveryStatus.sent}
    monkeypatch.setattr(ledger, "advance_due_times", real_advance)
    assert send_now(factory, configured, now=NOW).report.sent == len(EMAILS) - 3  # the next run catches up
    assert server.handler.recipients() == {email: 1 for email in EMAILS}
