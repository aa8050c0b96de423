"""Every card says why it is there and carries the reader's two feedback links (issue 11): in the
HTML and the text part as sent, signed for that reader, that paper and that action; for a reader
without topics the digest reads as the day's trending papers; a suggestion says which liked paper
it is like. Titles and links stay escaped."""

from __future__ import annotations

import re
from dataclasses import replace
from html import unescape

import pytest

from digest.delivery.compose import edition_page, preview_digest
from digest.mail import EditionRenderer, build_message, feedback_links, to_bytes
from digest.matching.results import Match
from digest.tokens import read_feedback_token
from tests.factories import make_paper, make_subscriber
from tests.mail.helpers import EDITION, LINKS, NO_MORE, Elements, body, parse, ranked, sample_papers

FEEDBACK_URL = re.compile(r"(More|Less) like this: (\S+)")


@pytest.fixture
def renderer(settings):
    return EditionRenderer(settings, EDITION)


@pytest.fixture
def reader(session):
    return make_subscriber(session, "ana@example.org", ["pretraining", "diffusion"])


def as_sent(rendered, settings, to="ana@example.org"):
    message = parse(to_bytes(build_message(rendered, to, settings, unsubscribe_url=LINKS.unsubscribe_url), settings))
    return body(message, "html"), body(message, "plain")


def html_cards(html: str) -> list[str]:
    return re.split(r'<td class="card"', html)[1:]


def text_cards(text: str) -> list[str]:
    return re.split(r"\n(?=\d+\. )", text.split("\n--\n")[0])[1:]


def feedback_hrefs(card_html: str) -> dict[str, str]:
    """The card's links by their visible label."""
    found = re.findall(r'<a class="feedback-link" href="([^"]+)"[^>]*>([^<]+)</a>', card_html)
    return {label: unescape(href) for href, label in found}


def claims(session, settings, url: str):
    token = url.rsplit("/feedback/", 1)[1]
    subscriber, claim = read_feedback_token(session, token, settings)
    return subscriber.id, claim.paper_id, claim.action


def test_every_card_has_both_links_in_both_parts_signed_for_that_reader_paper_and_action(
        renderer, reader, session, settings):
    shown = ranked(["pretraining", "diffusion"])[:10]
    links = replace(LINKS, feedback=feedback_links(reader, settings))
    html, text = as_sent(renderer.render_digest(reader.email, ["pretraining", "diffusion"], shown, 40, links), settings)
    cards_html, cards_text = html_cards(html), text_cards(text)
    assert len(cards_html) == len(cards_text) == len(shown) == 10
    for match, card_html, card_text in zip(shown, cards_html, cards_text):
        paper_id = match.paper.id
        hrefs = feedback_hrefs(card_html)
        assert set(hrefs) == {"More like this", "Less like this"}
        in_text = dict(FEEDBACK_URL.findall(card_text))
        assert in_text == {"More": hrefs["More like this"], "Less": hrefs["Less like this"]}
        assert claims(session, settings, hrefs["More like this"]) == (reader.id, paper_id, "more")
        assert claims(session, settings, hrefs["Less like this"]) == (reader.id, paper_id, "less")
        assert hrefs["More like this"].startswith("http://digest.test/feedback/")
    # another reader's email carries other links for the same cards
    other = make_subscriber(session, "bo@example.org", ["pretraining", "diffusion"])
    second = renderer.render_digest(other.email, ["pretraining", "diffusion"], shown, 40,
                                    replace(LINKS, feedback=feedback_links(other, settings)))
    first_card = feedback_hrefs(html_cards(second.html)[0])
    assert claims(session, settings, first_card["More like this"]) == (other.id, shown[0].paper.id, "more")
    assert first_card["More like this"] not in html


def test_the_view_in_browser_page_carries_the_links_too(renderer, reader, session, settings):
    matches = ranked(["pretraining", "diffusion"])
    page = renderer.render_page(reader.email, ["pretraining", "diffusion"], matches,
                                replace(LINKS, feedback=feedback_links(reader, settings)))
    cards = html_cards(page)
    assert len(cards) == len(matches) > 25
    for match, card in zip(matches, cards):
        assert claims(session, settings, feedback_hrefs(card)["Less like this"]) == (reader.id, match.paper.id, "less")


def test_delivery_composes_the_links_for_its_reader_in_the_email_and_on_the_page(session, settings):
    papers = [make_paper(session, title=f"Pretraining study {n}", upvotes=n, edition=EDITION) for n in range(3)]
    reader = make_subscriber(session, "cy@example.org", ["pretraining"])
    preview = preview_digest(session, settings, "cy@example.org", EDITION)
    message = parse(to_bytes(build_message(preview.rendered, "cy@example.org", settings), settings))
    cards = text_cards(body(message, "plain"))
    assert len(cards) == 3 and len(html_cards(body(message, "html"))) == 3
    seen = set()
    for card, card_html in zip(cards, html_cards(body(message, "html"))):
        urls = dict(FEEDBACK_URL.findall(card))
        assert feedback_hrefs(card_html) == {"More like this": urls["More"], "Less like this": urls["Less"]}
        reader_id, paper_id, action = claims(session, settings, urls["More"])
        assert (reader_id, action) == (reader.id, "more") and paper_id in card
        seen.add(paper_id)
    assert seen == {p.id for p in papers}
    page = edition_page(session, settings, reader, EDITION)
    for card in html_cards(page):
        assert claims(session, settings, feedback_hrefs(card)["More like this"])[0] == reader.id


def test_the_links_are_escaped_in_the_html_and_whole_in_the_text(renderer, session):
    shown = ranked(["pretraining"])[:2]
    links = replace(NO_MORE, feedback=lambda paper_id, action: f'http://digest.test/f?p={paper_id}&a={action}"x<y>')
    rendered = renderer.render_digest("a@example.org", ["pretraining"], shown, 2, links)
    assert '<y>' not in rendered.html and '"x' not in rendered.html.split("feedback-link", 1)[1].split(">", 1)[0]
    assert f"http://digest.test/f?p={shown[0].paper.id}&amp;a=more&#34;x&lt;y&gt;" in rendered.html
    assert f"More like this: http://digest.test/f?p={shown[0].paper.id}&a=more\"x<y>" in rendered.text
    bad = replace(NO_MORE, feedback=lambda paper_id, action: "javascript:alert(1)")
    with pytest.raises(ValueError, match="feedback"):
        renderer.render_digest("a@example.org", ["pretraining"], shown, 2, bad)


def test_a_matched_card_says_which_topics_matched_and_its_upvotes(renderer, settings):
    paper = make_paper(title="Pretraining <em>at</em> scale", upvotes=7)
    html, text = as_sent(renderer.render_digest("a@example.org", ["pretraining"], [Match(paper, 1.0, ("pretraining",), ())],
                                                1, NO_MORE), settings)
    assert "   Matched: pretraining · 7 upvotes\n" in text
    visible = Elements(html).visible_text
    assert "pretraining" in visible and "7 upvotes" in visible
    assert "Pretraining &lt;em&gt;at&lt;/em&gt; scale" in html and "<em>" not in html
    assert "1 new paper matched your topics" in visible


def test_a_suggestion_says_which_liked_paper_it_is_like_escaped(renderer, settings):
    matched = make_paper(title="Pretraining for robots", upvotes=3)
    suggested = make_paper(title="A <script>alert(1)</script> world model", upvotes=0)
    matches = [Match(matched, 2.0, ("pretraining",), ()),
               Match(suggested, 1.0, (), (), resembles='Robots that <b>learn</b> "fast"')]
    rendered = renderer.render_digest("a@example.org", ["pretraining"], matches, 2, NO_MORE)
    html, text = as_sent(rendered, settings)
    first, second = text_cards(text)
    assert "   Like: Robots that <b>learn</b> \"fast\"\n" in second and "Matched" not in second
    assert "Like:" not in first
    assert "<b>" not in html and "<script" not in html
    assert "Like: Robots that &lt;b&gt;learn&lt;/b&gt; &#34;fast&#34;" in html
    second_html = html_cards(html)[1]
    assert "Like: Robots that <b>learn</b> \"fast\"" in Elements(second_html).visible_text
    # the words above the cards do not claim the suggestion matched a topic
    visible = Elements(html).visible_text
    assert "matched your topics" not in visible
    assert "2 new papers picked for you" in visible and "1 suggestion like papers you liked" in visible
    assert rendered.subject == "2 new papers on pretraining and suggestions · Nov 26"


def test_a_digest_of_suggestions_only_says_so(renderer):
    paper = make_paper(title="World models", upvotes=2)
    rendered = renderer.render_digest("a@example.org", ["pretraining"], [Match(paper, 1.0, (), (), resembles="Dreamer")],
                                      1, NO_MORE)
    assert rendered.subject == "1 new paper you may like · Nov 26"
    assert "Like: Dreamer" in rendered.text and "Matched" not in rendered.text


def test_a_trending_readers_digest_shows_upvotes_and_reads_as_the_days_trending_papers(renderer, settings):
    papers = sorted(sample_papers(), key=lambda p: -(p.upvotes or 0))[:10]
    matches = [Match(p, float(p.upvotes or 0), (), ()) for p in papers]
    rendered = renderer.render_digest("ana@example.org", [], matches, 98, LINKS)
    html, text = as_sent(rendered, settings)
    assert rendered.subject == "Today's 10 trending papers · Nov 26"
    visible = Elements(html).visible_text
    for part in (visible, text):
        assert "Today's 10 trending papers" in part
        assert "The most upvoted on Hugging Face Daily Papers, most first. The top 10 of 98." in part
        assert "ana@example.org subscribed to the day's trending papers." in part
        assert "topics" not in part.replace("Change topics or delivery time", "")
    assert "and 88 more papers today, by upvotes." in visible and "And 88 more papers today, by upvotes. See all 98:" in text
    for paper, card, card_html in zip(papers, text_cards(text), html_cards(html)):
        votes = f"{paper.upvotes} upvote{'s' if paper.upvotes != 1 else ''}" if paper.upvotes else "no upvotes yet"
        assert card.splitlines()[2] == f"   {votes}"
        assert votes in Elements(card_html).visible_text


def test_a_trending_pick_without_upvotes_says_so(renderer):
    paper = make_paper(title="Fresh paper", upvotes=0)
    rendered = renderer.render_digest("a@example.org", [], [Match(paper, 0.0, (), ())], 1, NO_MORE)
    assert "   no upvotes yet\n" in rendered.text and "no upvotes yet" in Elements(rendered.html).visible_text
    assert rendered.subject == "Today's 1 trending paper · Nov 26"


def test_the_note_for_a_trending_reader_on_an_empty_day(renderer):
    rendered = renderer.render_empty("a@example.org", [], NO_MORE)
    assert rendered.subject == "No new papers today · Nov 26"
    for part in (Elements(rendered.html).visible_text, rendered.text):
        assert "Today's edition has no new papers" in part and "matched your topics" not in part
        assert "subscribed to the day's trending papers" in part


def test_the_readers_links_leave_the_cards_and_their_encoding_shared(renderer, session, settings):
    """The links differ per reader; the cards they sit under must not: two readers of the same
    papers share every card and its quoted-printable text (encoded once, whole lines)."""
    shown = ranked(["pretraining"])[:5]
    for email in ("ana@example.org", "bo@example.org"):
        reader = make_subscriber(session, email, ["pretraining"])
        rendered = renderer.render_digest(email, ["pretraining"], shown, 5,
                                          replace(NO_MORE, feedback=feedback_links(reader, settings)))
        assert rendered.text_qp is not None
    assert len(renderer._cards_cache) == len(renderer._encoded_rests) == 5
    assert all(renderer._encoded_rests.values())  # each card encoded piecewise, none whole per message
