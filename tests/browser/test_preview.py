"""The live preview's refusals, as a reader sees them in Chromium: a topic past the language's
limits, and previews past the per-minute limit (the app served by uvicorn, the real store)."""

from __future__ import annotations

import re
import uuid

import pytest

from digest.config import load_settings
from digest.db import session_factory
from digest.ingest import store_papers
from digest.mail import settings_url
from digest.sources.file import parse_record
from digest.web import create_app
from digest.web.ratelimit import RateLimiter
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_journey import shoot
from tests.conftest import REDIS_URL, TEST_SECRET_KEY
from tests.factories import make_subscriber, sample_records
from tests.web.live import served

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def site(committed_db, database_url, tmp_path):
    sessions = session_factory(committed_db)
    with sessions() as session, session.begin():
        store_papers(session, [parse_record(r) for r in sample_records()])
        reader = make_subscriber(session, "reader@example.org", ["pretraining"])
    limiter = RateLimiter(1000, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
    made = {}

    def app_for(base_url):
        made["settings"] = load_settings(database_url=database_url, base_url=base_url, secret_key=TEST_SECRET_KEY,
                                         broker_url=REDIS_URL, outbox_dir=tmp_path / "outbox", sources="hf",
                                         preview_rate_limit=4)
        return create_app(made["settings"], sessions=sessions, limiter=limiter)

    with served(app_for) as base_url:
        yield settings_url(reader, made["settings"])


def test_the_preview_says_which_limit_a_topic_breaks_and_when_previews_come_too_fast(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(site)  # the page shows a preview: one of the four a minute
        body = page.locator("#preview-body")
        page.fill("#topics", "pretraining\nab* cd* ef* gh* ij*")
        page.wait_for_function("() => document.querySelector('#preview-body').textContent.includes('prefixes')")
        assert "ab* cd* ef* gh* ij*: has more than the 4 prefixes (word*) a topic may have" in body.inner_text()
        shoot(page, "10-preview-limit")
        for topics in ("agents", "diffusion", "speech"):  # previews 3, 4 and 5 of the minute
            page.fill("#topics", topics)
            page.wait_for_timeout(600)  # the script asks 300 ms after the last key
        page.wait_for_function("() => document.querySelector('#preview-body').textContent.includes('Too many')")
        assert re.search(r"Too many previews in a minute", body.inner_text())
        shoot(page, "11-preview-too-many")
        browser.close()
