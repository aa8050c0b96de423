"""Feedback in a real browser (Debian's chromium through Playwright) with JavaScript off, as a mail
program's browser may be, against the real app served by uvicorn and the real database: open a
"More like this" link, see the paper and its one button, press it, see the confirmation, undo;
then the settings page with the papers marked. Screenshots go to artifacts/."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from digest.config import REPO_ROOT, load_settings
from digest.db import session_factory
from digest.ingest import store_papers
from digest.mail import feedback_url, settings_url
from digest.models import Feedback, Paper
from digest.tokens import read_token
from digest.sources.file import parse_record
from digest.web import create_app
from digest.web.ratelimit import RateLimiter
from tests.conftest import REDIS_URL
from tests.factories import make_subscriber, sample_records
from tests.web.live import served

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = REPO_ROOT / "artifacts"
PHONE = {"width": 375, "height": 800}


@pytest.fixture
def server(committed_db, database_url, tmp_path):
    sessions = session_factory(committed_db)
    with sessions() as session, session.begin():
        store_papers(session, [parse_record(r) for r in sample_records()])
        reader = make_subscriber(session, "reader@example.org", ["pretraining"])
        papers = session.scalars(select(Paper).order_by(Paper.upvotes.desc(), Paper.id).limit(3)).all()
    limiter = RateLimiter(50, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
    made = {}

    def app_for(base_url):
        made["settings"] = load_settings(
            database_url=database_url, base_url=base_url, secret_key="browser-test-secret-key-0123456789abcdef",
            broker_url=REDIS_URL, outbox_dir=tmp_path / "outbox", sources="hf",
        )
        return create_app(made["settings"], sessions=sessions, limiter=limiter)

    with served(app_for) as base_url:
        yield base_url, sessions, made["settings"], reader, papers


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def fits(page) -> bool:
    """Nothing wider than the screen: no sideways scrolling on a phone."""
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def marks(sessions) -> list[tuple[str, bool, str]]:
    with sessions() as session:
        return [tuple(r) for r in session.execute(select(Feedback.paper_id, Feedback.liked, Feedback.source))]


def test_a_feedback_link_a_button_a_confirmation_and_undo(server, browser):
    base_url, sessions, settings, reader, papers = server
    paper = papers[0]
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()

    page.goto(feedback_url(reader, paper.id, "more", settings))
    assert page.get_by_role("heading", name="More like this?").is_visible()
    assert page.get_by_role("link", name=paper.title).get_attribute("href") == paper.abs_url
    assert page.get_by_role("button").count() == 1
    assert fits(page)
    shoot(page, "feedback-page.png")
    assert marks(sessions) == []  # opening the link recorded nothing

    page.get_by_role("button", name="More like this").click()
    expect(page.get_by_role("heading", name="Thanks: noted")).to_be_visible()  # waits for the answer
    assert page.get_by_text("We'll show you more papers like").is_visible()
    # A settings link of this reader's (its token carries the second it was made in, so not the same string).
    settings_link = page.get_by_role("link", name="Your settings").get_attribute("href")
    assert settings_link.startswith(f"{settings.base_url}/settings/")
    with sessions() as session:
        assert read_token(session, settings_link.rsplit("/", 1)[1], "settings", settings).id == reader.id
    assert fits(page)
    shoot(page, "feedback-recorded.png")
    assert marks(sessions) == [(paper.id, True, "email")]

    page.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("heading", name="Undone")).to_be_visible()
    assert marks(sessions) == []
    context.close()


def test_the_settings_page_lists_the_marks_and_removes_one(server, browser):
    base_url, sessions, settings, reader, papers = server
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    for paper, action in ((papers[0], "more"), (papers[1], "less"), (papers[2], "more")):
        page.goto(feedback_url(reader, paper.id, action, settings))
        page.get_by_role("button", name="More like this" if action == "more" else "Less like this").click()
        expect(page.get_by_role("heading", name="Thanks: noted")).to_be_visible()

    page.goto(settings_url(reader, settings))
    listed = page.locator("#marks li")
    assert listed.count() == 3
    assert sorted(listed.locator(".pill").all_inner_texts()) == ["Less", "More", "More"]
    assert page.get_by_label("Learn from my feedback").is_checked()
    assert page.get_by_label("Suggestions beyond my topics").is_checked()
    shoot(page, "settings-feedback.png")
    page.set_viewport_size(PHONE)
    assert fits(page)
    shoot(page, "settings-feedback-375.png")

    page.get_by_role("button", name=f"Remove the mark on {papers[1].title}").click()
    expect(page.get_by_text("That mark is removed")).to_be_visible()
    assert page.locator("#marks li").count() == 2
    assert sorted(m[0] for m in marks(sessions)) == sorted([papers[0].id, papers[2].id])
    context.close()
