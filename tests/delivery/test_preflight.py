"""A configuration fault stops a send before anything is claimed; a digest that could not be
built waits for a later run instead of counting as failed for good. Issue 13: a missing DKIM key
file used to mark every row `failed`, and the edition was lost for everyone."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.delivery import check_sending, composer_for, dispatch, send_batch
from digest.errors import ConfigError
from digest.models import Delivery, Subscriber
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.smtp_server import SmtpTestServer


@pytest.fixture
def server():
    with SmtpTestServer() as running:
        yield running


def statuses(session) -> dict[str, str]:
    session.expire_all()
    rows = dict(session.execute(
        select(Subscriber.email, Delivery.status).join(Delivery, Delivery.subscriber_id == Subscriber.id)
    ).all())
    session.commit()
    return {email: status.value for email, status in rows.items()}


def test_a_missing_dkim_key_stops_send_batch_before_any_row_is_claimed(session, session_factory, settings, server,
                                                                     tmp_path):
    add_sample_papers(session, EDITION)
    for n in range(3):
        due_subscriber(session, f"r{n}@example.org")
    session.commit()
    ids: list[int] = []
    dispatch(session_factory, settings, ids.extend, now=NOW)
    broken = settings.model_copy(update={"smtp_url": server.url, "dkim_key_file": tmp_path / "missing.pem"})
    with pytest.raises(ConfigError, match="DIGEST_DKIM_KEY_FILE"):
        send_batch(session_factory, broken, ids, now=NOW)
    assert statuses(session) == {f"r{n}@example.org": "pending" for n in range(3)}
    assert session.scalar(select(Delivery.attempts).where(Delivery.id == ids[0])) == 0  # never claimed
    session.commit()
    assert server.handler.recipients() == {}
    fixed = broken.model_copy(update={"dkim_key_file": None})
    assert send_batch(session_factory, fixed, ids, now=NOW).sent == 3


@pytest.mark.parametrize("change, setting", [
    ({"sender": "Papers <not an address@x>"}, "DIGEST_FROM"),
    ({"unsubscribe_mailto": "mailto:a b@example.org"}, "DIGEST_UNSUBSCRIBE_MAILTO"),
    ({"list_id": "Papers <bad\nid>"}, "DIGEST_LIST_ID"),
])
def test_every_setting_a_message_needs_is_checked_up_front(session, session_factory, settings, change, setting):
    with pytest.raises(ConfigError, match=setting):
        check_sending(settings.model_copy(update=change))


def test_a_digest_that_could_not_be_built_stays_pending_with_back_off(session, session_factory, settings, server,
                                                                     monkeypatch):
    add_sample_papers(session, EDITION)
    due_subscriber(session, "ana@example.org")
    due_subscriber(session, "bo@example.org")
    session.commit()
    configured = settings.model_copy(update={"smtp_url": server.url})
    ids: list[int] = []
    dispatch(session_factory, configured, ids.extend, now=NOW)
    composer = composer_for(configured)
    real = composer.compose

    def compose(job, matches):  # a bug that hits one subscriber's digest
        if job.subscriber.email == "bo@example.org":
            raise RuntimeError("template bug")
        return real(job, matches)

    monkeypatch.setattr(composer, "compose", compose)
    report = send_batch(session_factory, configured, ids, now=NOW, composer=composer)
    assert report.sent == 1 and report.failed == 0 and report.retrying == 1
    assert statuses(session) == {"ana@example.org": "sent", "bo@example.org": "pending"}
    row = session.scalar(select(Delivery).join(Subscriber).where(Subscriber.email == "bo@example.org"))
    assert "template bug" in row.last_error and row.next_attempt_at > NOW
    session.commit()
    monkeypatch.undo()
    later = send_batch(session_factory, configured, ids, now=NOW + timedelta(minutes=6))
    assert later.sent == 1
    assert server.handler.recipients() == {"ana@example.org": 1, "bo@example.org": 1}


@pytest.mark.integration
def test_digest_send_with_a_missing_dkim_key_exits_with_one_line_and_loses_no_edition(cli_env, committed_db, tmp_path):
    """The issue's reproduction, as an operator types it: the edition must still go out once the
    setting is fixed."""
    with Session(committed_db) as session:
        add_sample_papers(session, EDITION)
        for n in range(5):
            due_subscriber(session, f"r{n}@example.org")
        session.commit()
    env = {**os.environ, **cli_env, "DIGEST_DKIM_KEY_FILE": "/nonexistent/key.pem"}
    command = [sys.executable, "-m", "digest.cli", "send", "--edition", EDITION.isoformat()]
    broken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0
    assert broken.stderr.strip().splitlines() == [broken.stderr.strip()]  # one line
    assert "DIGEST_DKIM_KEY_FILE" in broken.stderr and "/nonexistent/key.pem" in broken.stderr
    del env["DIGEST_DKIM_KEY_FILE"]
    fixed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    assert "sent: 5," in fixed.stdout and "already had" not in fixed.stdout
