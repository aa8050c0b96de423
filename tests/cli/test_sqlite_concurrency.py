"""The embedded default serves and sends at once (issue 13: with SQLite, subscribe posts during a
send answered 500 and `digest send` exited 1 with nothing sent; bursts of posts answered 500; two
sends at once both failed half-way). Real processes on one SQLite file: `digest web` (uvicorn),
`digest send`, an SMTP server the test runs."""

from __future__ import annotations


import pytest

from tests.cli import sqlite_processes as proc
from tests.smtp_server import SmtpTestServer

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    return url, tmp_path


def test_subscribe_posts_during_a_send_are_all_answered_and_the_send_finishes(store):
    url, folder = store
    proc.populate_sqlite(url, 3000)
    emails = [f"new{n}@example.org" for n in range(20)]
    with SmtpTestServer() as smtp:
        codes, send, output = proc.posts_during_a_send(url, folder, smtp, emails)
        assert codes == [303] * 20
        assert send.returncode == 0, output
        assert proc.sent_count(output) == 3000
        assert len(smtp.handler.recipients()) == 3000 + 20  # every digest, every confirmation
        assert max(smtp.handler.recipients().values()) == 1
    assert proc.subscribers_in(url, emails) == 20


def test_bursts_of_concurrent_subscribe_posts_are_all_answered(store):
    url, folder = store
    proc.populate_sqlite(url, 10)
    env = proc.environment(url, folder / "outbox")
    web = proc.Web(env, folder, folder / "web.log")
    try:
        emails = [f"burst{n}@example.org" for n in range(60)]
        answers = sum((proc.burst(web.url, emails[start:start + 20]) for start in (0, 20, 40)), start=proc.Counter())
    finally:
        web.stop()
    assert answers == {303: 60}
    assert proc.subscribers_in(url, emails) == 60
    assert len(list((folder / "outbox").glob("burst*.eml"))) == 60  # each confirmation, once


def test_two_sends_at_once_both_finish_and_nobody_gets_two(store):
    url, folder = store
    proc.populate_sqlite(url, 1000)
    with SmtpTestServer() as smtp:
        env = proc.environment(url, folder / "outbox", smtp.url)
        first, second = proc.start_send(env, folder), proc.start_send(env, folder)
        outputs = [first.communicate(timeout=300)[0], second.communicate(timeout=300)[0]]
        assert first.returncode == 0 and second.returncode == 0, outputs
        assert sum(proc.sent_count(output) for output in outputs) == 1000
        received = smtp.handler.recipients()
    assert len(received) == 1000 and max(received.values()) == 1
