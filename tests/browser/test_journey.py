"""The whole journey in a real browser (Debian's chromium through Playwright), against the real
app served by uvicorn, a real SMTP server (aiosmtpd) and the real database:
subscribe, read the confirmation mail, confirm, change topics with the live preview, unsubscribe
with the button, subscribe again. Screenshots at 375 and 1280 pixels wide go to SCREENSHOTS."""

from __future__ import annotations

import re
import socket
import threading
import uuid
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from digest.config import REPO_ROOT, load_settings
from digest.db import session_factory
from digest.ingest import store_papers
from digest.models import Subscriber, SubscriberStatus
from digest.sources.file import parse_record
from digest.mail import view_url
from digest.editions import latest_edition
from digest.read import preview_topics
from digest.web import create_app
from digest.web.ratelimit import RateLimiter
from tests.conftest import REDIS_URL
from tests.factories import sample_records
from tests.web.live import served

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
WIDTHS = (375, 1280)


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.arrived:
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
            self.arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 15.0):
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout), f"{len(self.messages)} messages"
            return self.messages[count - 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def inbox():
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def server(committed_db, database_url, inbox, tmp_path):
    _, smtp_port = inbox
    sessions = session_factory(committed_db)
    with sessions() as session, session.begin():
        store_papers(session, [parse_record(r) for r in sample_records()])
    limiter = RateLimiter(50, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
    made = {}

    def app_for(base_url):
        made["settings"] = load_settings(
            database_url=database_url, base_url=base_url, secret_key="browser-test-secret-key-0123456789abcdef",
            broker_url=REDIS_URL, smtp_url=f"smtp://127.0.0.1:{smtp_port}?starttls=off",
            outbox_dir=tmp_path / "outbox", sources="hf",
        )
        return create_app(made["settings"], sessions=sessions, limiter=limiter)

    with served(app_for) as base_url:
        yield base_url, sessions, made["settings"]


def shoot(page, name: str) -> None:
    """The current page at every width, full length."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(original)


def confirmation_link(message) -> str:
    body = message.get_body(("plain",)).get_content()
    return re.search(r"https?://\S+/confirm/\S+", body).group(0)


def subscriber_row(sessions, email):
    with sessions() as session:
        query = select(Subscriber).where(Subscriber.email == email).options(selectinload(Subscriber.topics))
        return session.scalars(query).one_or_none()


def test_subscribe_confirm_change_topics_unsubscribe_and_subscribe_again(server, inbox, browser):
    base_url, sessions, settings = server
    mails, _ = inbox
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin")
    page = context.new_page()

    # The landing page: what it is, today's papers, the form (time zone pre-filled by the browser).
    page.goto(base_url + "/")
    assert page.get_by_role("heading", name="The new papers on your topics, every morning").is_visible()
    assert page.locator(".papers li").count() == 6
    assert page.input_value("#timezone") == "Europe/Berlin"
    shoot(page, "01-landing")

    page.fill("#email", "Reader@Example.org")
    page.fill("#topics", "pretraining\ndiffusion -video")
    page.select_option("#hour", "6")
    page.click("button:has-text('Subscribe')")
    page.wait_for_url(base_url + "/subscribed")
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    shoot(page, "02-check-inbox")
    row = subscriber_row(sessions, "reader@example.org")
    assert (row.status, row.timezone, row.delivery_hour) == (SubscriberStatus.pending, "Europe/Berlin", 6)

    # The confirmation arrives by SMTP; opening its link confirms nothing until the button.
    recipients, message = mails.wait_for(1)
    assert recipients == ["reader@example.org"]
    link = confirmation_link(message)
    assert link.startswith(base_url + "/confirm/")
    page.goto(link)
    assert page.get_by_text("reader@example.org").first.is_visible()
    shoot(page, "03-confirm")
    assert subscriber_row(sessions, "reader@example.org").status == SubscriberStatus.pending
    page.click("button:has-text('Confirm subscription')")
    page.wait_for_url(re.compile(r"/settings/.+confirmed=1"))
    assert page.get_by_text("Your subscription is confirmed").is_visible()
    assert subscriber_row(sessions, "reader@example.org").status == SubscriberStatus.active
    settings_url = page.url.split("?")[0]

    # Change topics: the live preview follows the typing, and matches what the digest would send.
    page.fill("#topics", "agent*")
    with sessions() as session:
        expected = preview_topics(session, "agent*", 10)
    assert expected.total > 0
    summary = f"would have sent you {len(expected.papers)} paper"
    page.wait_for_function(
        "([text, first]) => { const body = document.querySelector('#preview-body');"
        " const link = body.querySelector('li a');"
        " return body.textContent.includes(text) && link && link.textContent === first; }",
        arg=[summary, expected.papers[0].title], timeout=10_000,
    )
    titles = page.locator("#preview-body li a").all_inner_texts()
    assert titles == [p.title for p in expected.papers]
    shoot(page, "04-settings-preview")

    # A topic that does not parse: the preview says why, saving shows the error and keeps the rest.
    page.fill("#topics", "agent*\n(speech OR audio")
    page.wait_for_function("() => document.querySelector('#preview-body').textContent.includes('cannot be used')")
    page.click("button:has-text('Save settings')")
    assert page.get_by_text("Nothing was saved").first.is_visible()
    shoot(page, "05-settings-error")
    assert [t.query for t in subscriber_row(sessions, "reader@example.org").topics] == ["pretraining", "diffusion -video"]

    page.fill("#topics", "agent*\n(speech OR audio) generation")
    page.select_option("#frequency", "weekly")
    page.select_option("#weekday", "2")
    page.fill("#max_papers", "5")
    page.click("button:has-text('Save settings')")
    page.wait_for_url(re.compile(r"saved=1"))
    assert page.get_by_text("Your settings are saved").is_visible()
    row = subscriber_row(sessions, "reader@example.org")
    assert [t.query for t in row.topics] == ["agent*", "(speech OR audio) generation"]
    assert (row.frequency.value, row.weekday, row.max_papers) == ("weekly", 2, 5)

    # Unsubscribe with the button (the settings page links to the page that has it).
    page.click("a:has-text('Unsubscribe')")
    assert page.get_by_role("button", name="Unsubscribe").is_visible()
    assert page.get_by_role("button", name="Drop this topic").count() == 2
    shoot(page, "06-unsubscribe")
    assert subscriber_row(sessions, "reader@example.org").status == SubscriberStatus.active
    page.get_by_role("button", name="Unsubscribe").click()
    assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
    shoot(page, "07-unsubscribed")
    assert subscriber_row(sessions, "reader@example.org").status == SubscriberStatus.unsubscribed

    # Subscribe again: double opt-in again, and the old settings link no longer works.
    page.click("a:has-text('Subscribe again')")
    page.fill("#email", "reader@example.org")
    page.fill("#topics", "pretraining")
    page.click("button:has-text('Subscribe')")
    page.wait_for_url(base_url + "/subscribed")
    _, second = mails.wait_for(2)
    page.goto(confirmation_link(second))
    page.click("button:has-text('Confirm subscription')")
    page.wait_for_url(re.compile(r"confirmed=1"))
    row = subscriber_row(sessions, "reader@example.org")
    assert row.status == SubscriberStatus.active and [t.query for t in row.topics] == ["pretraining"]
    response = page.goto(settings_url)
    assert response.status == 400 and page.get_by_role("heading", name="This link is not valid").is_visible()
    shoot(page, "08-old-link")

    # The full edition behind "view in browser": the digest's own HTML, styled, every match.
    with sessions() as session:
        edition = latest_edition(session)
        expected = preview_topics(session, "pretraining", 50)
    page.goto(view_url(row, edition, settings))
    shoot(page, "09-full-edition")
    shown = " ".join(page.inner_text("body").split())
    for paper in expected.papers:
        assert " ".join(paper.title.split()) in shown
    context.close()
