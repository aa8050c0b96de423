"""The admin console in a real browser (Debian's chromium through Playwright) with JavaScript
off, against the app served by uvicorn and a real SMTP server that bounced one address: sign-in
refused then accepted, the overview, a search and a subscriber's page, the bounce in the
suppressions removed, a delete. Screenshots at 375 and 1280 pixels wide; no page is wider than
the phone, and the site's Content-Security-Policy is never violated."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from digest.config import load_settings
from digest.db import session_factory
from digest.delivery import dispatch, send_batch
from digest.models import FetchRun, Subscriber, Suppression
from digest.web import create_app
from digest.web.ratelimit import RateLimiter
from tests.browser.test_journey import shoot
from tests.conftest import REDIS_URL
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.smtp_server import RcptRule, SmtpTestServer
from tests.web.live import served

pytestmark = [pytest.mark.browser, pytest.mark.integration]

USER, PASSWORD = "operator", "browser admin password"


@pytest.fixture
def console(committed_db, database_url, tmp_path):
    with SmtpTestServer() as smtp:
        smtp.faults.rcpt.append(RcptRule("gone@example.org", "550 5.1.1 <gone@example.org>: Recipient address rejected"))
        sessions = session_factory(committed_db)

        def app_for(base_url: str):
            settings = load_settings(
                database_url=database_url, base_url=base_url, secret_key="browser-test-secret-key-0123456789abcdef",
                broker_url=REDIS_URL, smtp_url=smtp.url, sender="Papers <digest@papers.test>",
                outbox_dir=tmp_path / "outbox", admin_user=USER, admin_password=PASSWORD,
            )
            with sessions() as session, session.begin():
                add_sample_papers(session, EDITION)
                due_subscriber(session, "ana@example.org", ["pretraining", "<b>bold</b> OR diffusion"],
                               timezone="Europe/Berlin", delivery_hour=6)
                due_subscriber(session, "gone@example.org", ["pretraining"])
                session.add(FetchRun(source="hf", started_at=NOW, finished_at=NOW, new=98, updated=0, unchanged=0,
                                     skipped=0))
                session.add(FetchRun(source="arxiv:cs.LG", started_at=NOW, finished_at=NOW, new=0, updated=0,
                                     unchanged=0, skipped=0, error="export.arxiv.org answered 503 Service Unavailable"))
            ids: list[int] = []
            dispatch(sessions, settings, ids.extend, now=NOW)
            report = send_batch(sessions, settings, ids, now=NOW)
            assert report.sent == 1 and report.bounced == 1
            limiter = RateLimiter(50, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
            return create_app(settings, sessions=sessions, limiter=limiter)

        with served(app_for) as base_url:
            yield base_url, sessions


def fits_a_phone(browser, page) -> None:  # noqa: F811 - the shared fixture's browser
    """The same page opened fresh on a 375-pixel-wide screen, signed in: nothing wider than it."""
    phone = browser.new_context(viewport={"width": 375, "height": 800}, java_script_enabled=False,
                                storage_state=page.context.storage_state())
    small = phone.new_page()
    small.goto(page.url)
    wide = small.evaluate("[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376"
                          " && !e.closest('.scroll')).map(e => e.tagName + '.' + e.className)")
    width = small.evaluate("document.documentElement.scrollWidth")
    phone.close()
    assert width <= 375 and not wide, (page.url, width, wide)


def test_the_console_in_a_browser_without_javascript(console, browser):  # noqa: F811 - the shared fixture
    base_url, sessions = console
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)

    page.goto(base_url + "/admin")
    assert page.url == base_url + "/admin/login"  # no session: the sign-in form
    page.fill("#user", USER)
    page.fill("#password", "not the password")
    page.click("button:has-text('Sign in')")
    expect(page.get_by_text("Wrong user name or password.")).to_be_visible()
    shoot(page, "admin-01-sign-in-refused")
    page.fill("#user", USER)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(base_url + "/admin")

    # The overview: this edition's counts, the failed fetch, the subscribers.
    row = page.locator("#editions tbody tr").first
    assert row.locator("td").all_inner_texts() == [EDITION.isoformat(), "98", "1", "0", "0", "1", "0", "50.0 %"]
    assert "export.arxiv.org answered 503" in page.locator("#fetch-last").inner_text()
    assert "active: 2" in page.locator("#subscriber-counts").inner_text()
    fits_a_phone(browser, page)
    shoot(page, "admin-02-overview")

    # Search by topic, open the subscriber: topics escaped, hour and zone, the delivery and its reply.
    page.click("nav >> text=Subscribers")
    page.fill("#q", "diffusion")
    page.click("button:has-text('Search')")
    assert page.locator("#subscribers tbody tr").count() == 1
    page.click("text=ana@example.org")
    expect(page.get_by_text("<b>bold</b> OR diffusion")).to_be_visible()
    assert "06:00 Europe/Berlin" in page.locator("#facts").inner_text()
    assert page.locator("#deliveries tbody tr td").nth(1).inner_text() == "sent"
    fits_a_phone(browser, page)
    shoot(page, "admin-03-subscriber")

    # The bounce is in the suppressions with the server's reply, and can be removed.
    page.click("nav >> text=Suppressions")
    listed = page.locator("#suppressions tbody tr")
    assert listed.count() == 1
    assert "gone@example.org" in listed.inner_text() and "550 5.1.1" in listed.inner_text()
    fits_a_phone(browser, page)
    shoot(page, "admin-04-suppressions")
    listed.locator("button:has-text('Remove')").click()
    page.wait_for_url("**/admin/suppressions?notice=*")
    expect(page.get_by_text("Suppression removed")).to_be_visible()
    expect(page.get_by_text("No suppressed address")).to_be_visible()
    with sessions() as session:
        assert session.get(Suppression, "gone@example.org") is None

    page.click("nav >> text=Deliveries")
    shoot(page, "admin-05-deliveries")

    # Delete, from the subscriber's page, ticking the box.
    page.goto(base_url + "/admin/subscribers?q=gone")
    page.click("text=gone@example.org")
    page.check("input[name=confirm_delete]")
    page.click("button:has-text('Delete subscriber')")
    page.wait_for_url("**/admin/subscribers?notice=*")
    expect(page.get_by_text("Deleted:")).to_be_visible()
    with sessions() as session:
        assert session.scalar(select(Subscriber).where(Subscriber.email == "gone@example.org")) is None

    page.click("nav >> text=Audit log")
    actions = page.locator("#audit tbody tr td:nth-child(3)").all_inner_texts()
    assert actions[:3] == ["delete subscriber", "remove suppression", "sign in"]
    fits_a_phone(browser, page)
    shoot(page, "admin-06-audit")
    assert violations == []
    context.close()
