"""The live preview under load: bounded topics, rate limits per link and per client, one
preview matching at a time while the other pages go on (real uvicorn, the store under test)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest
from sqlalchemy import create_engine

from digest.config import load_settings
from digest.db import session_factory
from digest.editions import EditionCache
from digest.ingest import store_papers
from digest.mail import settings_url
from digest.sources.file import parse_record
from digest.web import create_app
from digest.web.capacity import Busy, Capacity
from digest.web.ratelimit import RateLimiter
from tests.conftest import REDIS_URL, TEST_SECRET_KEY
from tests.factories import make_paper, make_subscriber, sample_records
from tests.web.live import served

ISSUES_WORST = "\n".join(" OR ".join(f"{a}{b}*" for a, b in zip("abcdefghijklmnopqrstuvwxyzab", "bcdefghijklmnopqrstuvwxyzabc"))
                         for _ in range(20))


def preview_path(subscriber, settings) -> str:
    return re.sub(r"^https?://[^/]+", "", settings_url(subscriber, settings)) + "/preview"


def test_topics_past_the_limits_get_a_clear_refusal(client, session, settings):
    subscriber = make_subscriber(session)
    make_paper(session, title="Pretraining at scale")
    answer = client.get(preview_path(subscriber, settings), params={"topics": ISSUES_WORST})
    assert answer.status_code == 422
    assert "has more than the 4 prefixes (word*) a topic may have" in answer.json()["errors"][0]["message"]
    answer = client.get(preview_path(subscriber, settings), params={"topics": " ".join("abcdefghijklm")})
    assert "has more than the 12 words a topic may have" in answer.json()["errors"][0]["message"]
    many = "\n".join(f"w{n}a w{n}b w{n}c w{n}d w{n}e" for n in range(17))  # 85 words in all
    answer = client.get(preview_path(subscriber, settings), params={"topics": many})
    assert answer.status_code == 422 and "85 words together, more than the 80" in answer.json()["errors"][0]["message"]


def test_previews_are_counted_per_link_and_per_client(settings, session_factory, outbox, session):
    from fastapi.testclient import TestClient

    limited = load_settings(**{**settings.model_dump(), "preview_rate_limit": 3})
    limiter = RateLimiter(1000, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
    app = create_app(limited, sessions=session_factory, limiter=limiter, transport=outbox)
    one, two = make_subscriber(session), make_subscriber(session)
    with TestClient(app, base_url=settings.base_url) as client:
        codes = [client.get(preview_path(one, settings), params={"topics": "agents"}).status_code for _ in range(4)]
        refused = client.get(preview_path(one, settings), params={"topics": "agents"})
        other_link = client.get(preview_path(two, settings), params={"topics": "agents"})  # same client: its count too
    assert codes == [200, 200, 200, 429]
    assert refused.status_code == 429 and "Too many previews" in refused.json()["message"]
    assert other_link.status_code == 429  # the client's own count, across links


def test_a_preview_is_refused_at_once_when_too_many_wait():
    async def scenario():
        capacity = Capacity(concurrent=1, waiting=1)
        release = threading.Event()
        results = []

        async def call():
            try:
                results.append(await capacity.run(lambda: release.wait(10)))
            except Busy:
                results.append("busy")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(call)  # runs
            await anyio.sleep(0.2)
            tasks.start_soon(call)  # waits
            await anyio.sleep(0.2)
            await call()  # one too many: refused at once
            release.set()
        return results

    assert sorted(map(str, anyio.run(scenario))) == ["True", "True", "busy"]


@pytest.fixture
def small_pool(database_url):
    """The app's sessions on a pool of two connections: what previews hold shows at once."""
    engine = create_engine(database_url, pool_size=2, max_overflow=0, pool_timeout=3)
    yield session_factory(engine)
    engine.dispose()


def test_while_previews_match_the_other_pages_are_served(committed_db, database_url, small_pool, tmp_path, monkeypatch):
    with session_factory(committed_db)() as session, session.begin():
        store_papers(session, [parse_record(r) for r in sample_records()])
        reader = make_subscriber(session, "reader@example.org", ["agents"])
    matching, release = threading.Event(), threading.Event()
    real_get = EditionCache.get

    def slow_get(self, session, days):  # a preview that takes long to match
        matching.set()
        assert release.wait(30)
        return real_get(self, session, days)

    monkeypatch.setattr(EditionCache, "get", slow_get)
    limiter = RateLimiter(1000, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")

    def app_for(base_url):
        settings = load_settings(database_url=database_url, base_url=base_url, secret_key=TEST_SECRET_KEY,
                                 broker_url=REDIS_URL, outbox_dir=tmp_path / "outbox", sources="hf")
        return create_app(settings, sessions=small_pool, limiter=limiter)

    with served(app_for) as base_url:
        settings = load_settings(database_url=database_url, base_url=base_url, secret_key=TEST_SECRET_KEY)
        url = base_url + preview_path(reader, settings)
        with ThreadPoolExecutor(4) as pool:
            previews = [pool.submit(httpx.get, url, params={"topics": f"agents OR topic{n}"}, timeout=60) for n in range(4)]
            assert matching.wait(10)
            time.sleep(0.5)  # the other three previews have arrived and wait their turn
            try:
                landing = httpx.get(base_url + "/", timeout=20)
            finally:
                release.set()
            assert landing.status_code == 200
            assert [p.result().status_code for p in previews] == [200] * 4
