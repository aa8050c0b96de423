"""An SMTP server that cannot be reached for a while is nobody's 4xx: the batch waits for it with
a short back-off and goes on as soon as it answers (issue 13: every row waited for the 5-minute
back-off and the next dispatch, and the digests arrived 8 minutes after the server was back)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from digest.config import parse_smtp_url
from digest.delivery import dispatch, send_batch
from digest.mail import ServerUnavailable, SmtpTransport
from digest.models import Delivery
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.smtp_server import SmtpTestServer


@pytest.fixture
def server():
    with SmtpTestServer() as running:
        yield running


def statuses(session) -> list[str]:
    session.expire_all()
    found = sorted(s.value for s in session.scalars(select(Delivery.status)))
    session.commit()
    return found


def prepared(session, session_factory, settings, count: int) -> list[int]:
    add_sample_papers(session, EDITION)
    for n in range(count):
        due_subscriber(session, f"r{n}@example.org", ["pretraining OR model"], notify_empty=True)
    session.commit()
    ids: list[int] = []
    dispatch(session_factory, settings, ids.extend, now=NOW)
    return ids


def test_a_server_down_for_a_moment_mid_batch_delays_the_batch_and_loses_nothing(session, session_factory,
                                                                                settings, server):
    # 5 messages a second: the server goes away between two messages, never after accepting one
    # and before its 250 (that would be the one duplicate a drop may cost, tested elsewhere).
    configured = settings.model_copy(update={"smtp_url": server.url, "smtp_outage_wait": 30.0,
                                             "smtp_outage_retry": 0.5, "smtp_rate": 5.0})
    ids = prepared(session, session_factory, configured, 8)
    gone: list[float] = []

    def go_away_for_two_seconds():
        server.go_away()
        gone.append(time.monotonic())
        threading.Timer(2.0, server.come_back).start()

    def after_the_third():
        if len(server.handler.received) == 3 and not gone:
            threading.Timer(0.05, go_away_for_two_seconds).start()

    server.handler.on_accept = after_the_third
    report = send_batch(session_factory, configured, ids, now=NOW)
    assert gone, "the server never went away"
    assert report.sent == 8 and report.retrying == 0 and not report.errors
    assert server.handler.recipients() == {f"r{n}@example.org": 1 for n in range(8)}
    assert statuses(session) == ["sent"] * 8


def test_a_longer_outage_leaves_the_rows_for_a_retry_soon(session, session_factory, settings, server):
    configured = settings.model_copy(update={"smtp_url": server.url, "smtp_outage_wait": 1.0,
                                             "smtp_outage_retry": 0.3})
    ids = prepared(session, session_factory, configured, 3)
    server.go_away()
    started = time.monotonic()
    report = send_batch(session_factory, configured, ids, now=NOW)
    assert time.monotonic() - started >= 1.0  # it did wait for the server before giving up
    assert report.sent == 0 and report.retrying == 3 and report.errors
    assert report.retry_after == 0.3  # what a Celery task uses as its countdown
    assert statuses(session) == ["pending"] * 3
    server.come_back()
    assert send_batch(session_factory, configured, ids, now=NOW).sent == 3  # pending: a retry claims them


def test_a_refused_login_is_not_waited_for(session, session_factory, settings, server):
    """Only an unreachable server is waited for: a refused login is a setting to fix."""
    configured = settings.model_copy(update={"smtp_url": server.url, "smtp_outage_wait": 60.0})
    ids = prepared(session, session_factory, configured, 2)

    class LoginRefused(SmtpTransport):
        def send(self, *args, **kwargs):
            raise ServerUnavailable("the server refused the login: 535", 535)

    started = time.monotonic()
    report = send_batch(session_factory, configured, ids, now=NOW,
                        transport=LoginRefused(parse_smtp_url(server.url)))
    assert time.monotonic() - started < 30
    assert report.errors and report.retry_after is None
