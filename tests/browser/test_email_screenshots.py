"""The sample digest, a trending reader's digest, the "nothing matched" note and the confirmation
email as a mail client shows them: Debian's chromium (Playwright), at phone (375) and desktop
(800) widths, light and dark. The HTML is taken from the parsed MIME message, so this is what a
reader's client gets. Screenshots go to artifacts/screenshots/ (kept by CI); a card with its
reason and its two feedback links, and a trending digest, to artifacts/digest-card-feedback.png
and artifacts/digest-trending.png."""

from __future__ import annotations

from dataclasses import replace

import pytest

from digest.config import REPO_ROOT
from digest.mail import build_message, make_message_id, to_bytes
from digest.mail import EditionRenderer, render_email
from digest.matching.results import Match
from tests.mail.helpers import EDITION, LINKS, NO_MORE, body, parse, ranked, sample_papers

pytestmark = [pytest.mark.browser]

ARTIFACTS = REPO_ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
WIDTHS = (375, 800)


def delivered_html(rendered, settings) -> str:
    data = to_bytes(
        build_message(rendered, "ana@example.org", settings, message_id=make_message_id(1, EDITION, settings),
                      unsubscribe_url=LINKS.unsubscribe_url),
        settings,
    )
    return body(parse(data), "html")


def feedback(paper_id: str, action: str) -> str:
    return f"http://digest.test/feedback/1.{action}.{paper_id}.signature"


def sample_emails(settings) -> dict[str, str]:
    renderer = EditionRenderer(settings, EDITION)
    links = replace(LINKS, feedback=feedback)
    matches = ranked(["pretraining", "diffusion", "video generation"])
    # the second card is a suggestion: like a paper the reader liked, no topic matched
    shown = [matches[0], Match(matches[1].paper, 1.0, (), (), resembles="Scaling Laws for Neural Language Models"),
             *matches[2:10]]
    digest = renderer.render_digest("ana@example.org", ["pretraining", "diffusion", "video generation"],
                                    shown, len(matches), links)
    by_upvotes = sorted(sample_papers(), key=lambda p: -(p.upvotes or 0))
    trending = renderer.render_digest("ana@example.org", [], [Match(p, float(p.upvotes or 0), (), ()) for p in by_upvotes[:10]],
                                      len(by_upvotes), links)
    empty = renderer.render_empty("ana@example.org", ["quantum gravity"], NO_MORE)
    confirm = render_email("confirm", settings=settings, email="ana@example.org",
                           confirm_url="http://digest.test/confirm/tok", topics=["pretraining", "diffusion -video"])
    return {name: delivered_html(r, settings)
            for name, r in (("digest", digest), ("trending", trending), ("empty", empty), ("confirm", confirm))}


def show(browser, html: str, width: int, scheme: str):
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.route("**/*", lambda route: route.abort())  # an email loads nothing from anywhere
    page.set_content(html, wait_until="load")
    return context, page, requests


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_emails_fit_the_screen_and_are_screenshotted(browser, settings, width, scheme):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, html in sample_emails(settings).items():
        context, page, requests = show(browser, html, width, scheme)
        try:
            assert requests == [], f"{name} loads {requests}"
            # nothing wider than the screen: no sideways scrolling on a phone
            assert page.evaluate("document.documentElement.scrollWidth") <= width, name
            box = page.locator("table.container").bounding_box()
            assert box["width"] <= 642 and box["x"] >= 0, (name, box)
            # no text smaller than 12px
            smallest = page.evaluate(
                "Math.min(...[...document.querySelectorAll('p, a, span, td, h1, h2, li')]"
                ".filter(e => e.offsetParent !== null && e.textContent.trim())"
                ".map(e => parseFloat(getComputedStyle(e).fontSize)))"
            )
            assert smallest >= 12, (name, smallest)
            background = page.evaluate("getComputedStyle(document.querySelector('table.container')).backgroundColor")
            assert background == ("rgb(255, 255, 255)" if scheme == "light" else "rgb(31, 41, 55)"), (name, background)
            page.screenshot(path=str(SCREENSHOTS / f"email-{name}-{width}-{scheme}.png"), full_page=True)
        finally:
            context.close()


def test_digest_cards_read_well_on_a_phone(browser, settings):
    html = sample_emails(settings)["digest"]
    context, page, _ = show(browser, html, 375, "light")
    try:
        titles = page.locator("a.title-link")
        assert titles.count() == 10
        first = titles.first.bounding_box()
        assert first["x"] >= 12 and first["x"] + first["width"] <= 375 - 12  # padding on both sides
        marks = page.locator("mark")
        assert marks.count() > 0
        assert page.evaluate("getComputedStyle(document.querySelector('mark')).backgroundColor") == "rgb(254, 240, 138)"
        button = page.locator("td.button-cell").bounding_box()
        card = page.locator("td.more").bounding_box()
        left, right = button["x"] - card["x"], card["x"] + card["width"] - button["x"] - button["width"]
        assert abs(left - right) < 4, (left, right)  # the "See all" button is centred
        assert page.get_by_text("See all").is_visible()
        assert page.get_by_role("link", name="Unsubscribe").is_visible()
    finally:
        context.close()


def test_confirm_button_stands_above_the_note_not_beside_it(browser, settings):
    context, page, _ = show(browser, sample_emails(settings)["confirm"], 375, "light")
    try:
        button = page.locator("td.button-cell").bounding_box()
        note = page.locator("p.small").bounding_box()
        assert note["y"] >= button["y"] + button["height"], (button, note)
    finally:
        context.close()


def test_a_card_shows_its_reason_and_its_two_feedback_links(browser, settings):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    emails = sample_emails(settings)
    context, page, _ = show(browser, emails["digest"], 375, "light")
    try:
        cards = page.locator("td.card")
        assert cards.count() == 10
        for i in range(cards.count()):
            card = cards.nth(i)
            more, less = card.get_by_role("link", name="More like this"), card.get_by_role("link", name="Less like this")
            assert more.is_visible() and less.is_visible()
            paper_id = card.locator("a.title-link").get_attribute("href").rsplit("/", 1)[1]
            assert more.get_attribute("href") == feedback(paper_id, "more")
            assert less.get_attribute("href") == feedback(paper_id, "less")
            box, card_box = more.bounding_box(), card.bounding_box()
            assert box["height"] >= 24 and box["x"] + box["width"] <= card_box["x"] + card_box["width"]
        second = cards.nth(1)
        assert second.get_by_text("Like: Scaling Laws for Neural Language Models").is_visible()
        assert "pretraining" in cards.nth(0).locator("p.badges").inner_text()
        page.set_viewport_size({"width": 800, "height": 900})
        cards.nth(1).screenshot(path=str(ARTIFACTS / "digest-card-feedback.png"))
    finally:
        context.close()


def test_a_trending_digest_reads_as_the_days_trending_papers(browser, settings):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page, _ = show(browser, sample_emails(settings)["trending"], 800, "light")
    try:
        assert page.get_by_role("heading", name="Today's 10 trending papers").is_visible()
        cards = page.locator("td.card")
        assert cards.count() == 10
        for i in range(cards.count()):
            assert "upvote" in cards.nth(i).locator("span.badge-votes").inner_text()
            assert cards.nth(i).get_by_role("link", name="Less like this").is_visible()
        assert page.get_by_text("subscribed to the day's trending papers").is_visible()
        page.screenshot(path=str(ARTIFACTS / "digest-trending.png"), full_page=True)
    finally:
        context.close()
