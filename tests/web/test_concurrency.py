"""The subscribe form against a real uvicorn and a real SMTP server, on the store under test
(PostgreSQL, then SQLite): simultaneous requests, and what the answer waits for."""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from digest.config import load_settings
from digest.db import session_factory
from digest.models import Subscriber
from digest.web import create_app
from digest.web.ratelimit import RateLimiter
from tests.conftest import REDIS_URL, TEST_SECRET_KEY
from tests.web.live import served, smtp_server, wait_until


@pytest.fixture
def mail():
    with smtp_server() as server:
        yield server


def live_settings(database_url, base_url, smtp_port, tmp_path):
    return load_settings(database_url=database_url, base_url=base_url, secret_key=TEST_SECRET_KEY,
                         broker_url=REDIS_URL, smtp_url=f"smtp://127.0.0.1:{smtp_port}?starttls=off",
                         outbox_dir=tmp_path / "outbox", sources="hf")


def csrf(client: httpx.Client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)


def test_twenty_simultaneous_posts_for_one_address_send_two_confirmations(committed_db, database_url, mail, tmp_path):
    inbox, smtp_port = mail
    limiter = RateLimiter(1000, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
    sessions = session_factory(committed_db)

    def app_for(base_url):
        return create_app(live_settings(database_url, base_url, smtp_port, tmp_path), sessions=sessions, limiter=limiter)

    with served(app_for) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        token = csrf(client)
        form = {"csrf_token": token, "email": "victim@example.org", "topics": "agents"}
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: client.post("/subscribe", data=form).status_code, range(20)))
        assert codes == [303] * 20
        assert wait_until(lambda: len(inbox.to("victim@example.org")) >= 2)
        time.sleep(2)  # the other eighteen requests finish after their answers: none may send
    assert len(inbox.to("victim@example.org")) == 2
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


class GatedSessions:
    """The app's sessions, each opened only once the gate is open: shows what an answer waited for."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self):
        assert self.gate.wait(30), "the gate stayed shut"
        return self.factory()


def test_the_subscribe_form_answers_before_it_touches_the_store(committed_db, database_url, mail, tmp_path):
    """One answer for everyone, at one speed: nothing that depends on the address (is it known,
    pending, active?) runs before the answer."""
    inbox, smtp_port = mail
    sessions = GatedSessions(session_factory(committed_db))
    limiter = RateLimiter(1000, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")

    def app_for(base_url):
        return create_app(live_settings(database_url, base_url, smtp_port, tmp_path), sessions=sessions, limiter=limiter)

    with served(app_for) as base_url, httpx.Client(base_url=base_url, timeout=10, follow_redirects=False) as client:
        token = csrf(client)
        sessions.gate.clear()  # from here on the store is out of reach
        try:
            answer = client.post("/subscribe", data={"csrf_token": token, "email": "ana@example.org", "topics": "agents"})
            assert answer.status_code == 303 and answer.headers["location"] == "/subscribed"
            assert inbox.to("ana@example.org") == []
        finally:
            sessions.gate.set()
        assert wait_until(lambda: len(inbox.to("ana@example.org")) == 1)  # then the work is done
