"""`digest send --edition D` after a killed run: the same command, run again once the sending
timeout has passed, finishes the job (issue 13: the killed run's claimed rows stayed unsent and
were counted as "already had")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.config import parse_smtp_url
from digest.delivery import claim, create_edition_rows, send_now
from digest.mail import SmtpTransport
from digest.models import Delivery, DeliveryStatus
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.smtp_server import SmtpTestServer


@pytest.fixture
def server():
    with SmtpTestServer() as running:
        yield running


def test_rows_a_dead_run_left_in_sending_are_taken_over_not_counted_as_had(session, session_factory, settings,
                                                                          server):
    add_sample_papers(session, EDITION)
    emails = [f"r{n}@example.org" for n in range(6)]
    for email in emails:
        due_subscriber(session, email, ["pretraining OR model"], notify_empty=True,
                       next_due_at=NOW + timedelta(hours=5))
    session.commit()
    configured = settings.model_copy(update={"smtp_url": server.url, "sending_timeout": 60})
    ids, _ = create_edition_rows(session_factory, EDITION, NOW)
    long_ago = NOW - timedelta(seconds=120)
    dead = claim(session_factory, ids[:3], long_ago, 60)  # a run killed two minutes ago
    alive = claim(session_factory, ids[3:4], NOW - timedelta(seconds=5), 60)  # a run still sending
    assert len(dead) == 3 and len(alive) == 1
    transport = SmtpTransport(parse_smtp_url(server.url))
    run = send_now(session_factory, configured, edition=EDITION, now=NOW, transport=transport)
    transport.close()
    assert run.report.sent == 5  # the dead run's three and the two nobody had claimed
    assert not any("already had" in note for note in run.notes), run.notes
    assert any("1 being sent by another run" in note for note in run.notes), run.notes
    assert set(server.handler.recipients()) == set(emails) - {emails[3]}


@pytest.mark.integration
@pytest.mark.postgres_only
def test_the_same_command_after_a_killed_run_finishes_the_job(cli_env, committed_db, server):
    emails = [f"reader{n:02d}@example.org" for n in range(40)]
    with Session(committed_db) as session:
        add_sample_papers(session, EDITION)
        for email in emails:
            due_subscriber(session, email, ["pretraining OR model OR language"], notify_empty=True)
        session.commit()
    server.faults.data_delay = 0.1  # about 4 s for the whole edition
    env = {**os.environ, **cli_env, "DIGEST_SMTP_URL": server.url, "DIGEST_SENDING_TIMEOUT": "3",
           "DIGEST_BATCH_SIZE": "5", "DIGEST_SMTP_RATE": "1000"}
    command = [sys.executable, "-m", "digest.cli", "send", "--edition", EDITION.isoformat()]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.monotonic() + 60
    while sum(server.handler.recipients().values()) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the run and its builder processes
    first.wait(10)
    with Session(committed_db) as session:
        stuck = session.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.sending))
        had = session.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.sent))
    assert stuck > 0 and had > 0
    server.faults.data_delay = 0.0
    time.sleep(3.5)  # the sending timeout passes
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"note: {had} subscriber(s) already had edition" in again.stdout  # the stuck ones are not counted
    received = server.handler.recipients()
    assert set(received) == set(emails), again.stdout
    assert sum(received.values()) - len(emails) <= 1  # at most the message in flight when it was killed
    with Session(committed_db) as session:
        left = session.scalar(select(func.count()).where(Delivery.status.in_([DeliveryStatus.sending,
                                                                                DeliveryStatus.pending])))
    assert left == 0
