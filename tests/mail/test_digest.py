"""The digest a subscriber reads: content, escaping, links, limits, and both parts agreeing."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from digest.matching.results import Match
from digest.mail import build_message, make_message_id, to_bytes
from digest.mail import MAX_HTML_BYTES, EditionRenderer, render_full_edition_html
from digest.mail.text import excerpt_window, wrap
from tests.factories import make_paper
from tests.mail.helpers import EDITION, LINKS, NO_MORE, Elements, body, parse, ranked, sample_papers


@pytest.fixture
def renderer(settings):
    return EditionRenderer(settings, EDITION)


@pytest.fixture
def matches():
    return ranked(["pretraining", "diffusion"])


def test_a_ten_paper_digest_parses_as_text_and_inlined_html(renderer, matches, settings):
    rendered = renderer.render_digest("ana@example.org", ["pretraining", "diffusion"], matches[:10], len(matches), LINKS)
    message = parse(to_bytes(build_message(rendered, "ana@example.org", settings, unsubscribe_url=LINKS.unsubscribe_url), settings))

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe"):
        assert message[header], header
    html = body(message, "html")
    assert html == rendered.html
    assert len(html.encode()) < MAX_HTML_BYTES
    assert "<script" not in html.lower()
    elements = Elements(html)
    # every element that shows something in the body carries its style inline
    for tag in ("td", "p", "h1", "h2", "a", "span", "mark"):
        found = elements.all(tag)
        assert found, tag
        assert all("style" in attrs for attrs in found), f"<{tag}> without style="
    # only the @media rules remain in <head>: the plain rules were inlined
    head_css = html[html.index("<style") : html.index("</style>")]
    assert "@media" in head_css and ".card {\n" not in head_css.split("@media")[0]
    assert not elements.all("img"), "no images: nothing to track, readable without images"


def test_subject_and_header_say_what_is_inside(renderer, matches):
    rendered = renderer.render_digest("a@example.org", ["pretraining", "diffusion"], matches[:7], 7, NO_MORE)
    assert rendered.subject == "7 new papers on pretraining, diffusion · Nov 26"
    text = Elements(rendered.html).visible_text
    assert "Thu 26 Nov 2026" in text
    assert "Thursday, 26 November 2026" in rendered.text
    assert "7 new papers matched your topics" in text
    assert re.search(r"Matched: pretraining \(\d+\), diffusion \(\d+\)", text)


def test_topic_counts_are_said_to_be_of_this_email_when_more_matched(renderer, matches):
    shown = matches[:3]
    rendered = renderer.render_digest("a@example.org", ["pretraining", "diffusion"], shown, 40, LINKS)
    text = Elements(rendered.html).visible_text
    in_email = sum(1 for m in shown if "pretraining" in m.topics)
    assert f"The best 3 of 40, ranked. In this email: pretraining ({in_email})" in text
    assert "Matched:" not in text


def test_one_card_per_paper_best_first_with_links_badges_and_authors(renderer, matches):
    shown = matches[:10]
    rendered = renderer.render_digest("a@example.org", ["pretraining", "diffusion"], shown, 10, NO_MORE)
    elements = Elements(rendered.html)
    titles = [a for a in elements.all("a") if "title-link" in a.get("class", "")]
    assert [a["href"] for a in titles] == [f"https://arxiv.org/abs/{m.paper.id}" for m in shown]
    hrefs = [a["href"] for a in elements.all("a")]
    first = shown[0].paper
    for url in (first.abs_url, first.pdf_url, first.hf_url):
        assert url in hrefs
    with_code = next((m.paper for m in shown if m.paper.github_repo), None)
    if with_code:
        assert with_code.github_repo in hrefs
    text = elements.visible_text
    assert text.index(shown[0].paper.title[:30]) < text.index(shown[1].paper.title[:30])
    # the topic that matched is a badge on the card
    badges = re.findall(r'<span class="badge"[^>]*>([^<]+)</span>', rendered.html)
    assert set(badges) <= {"pretraining", "diffusion"} and badges


def test_authors_are_shortened_past_five(renderer):
    six = make_paper(title="Six authors", authors=["A One", "B Two", "C Three", "D Four", "E Five", "F Six"])
    five = make_paper(title="Five authors", authors=["A One", "B Two", "C Three", "D Four", "E Five"])
    matches = [Match(six, 2.0, ("x",), ()), Match(five, 1.0, ("x",), ())]
    rendered = renderer.render_digest("a@example.org", ["x"], matches, 2, NO_MORE)
    assert "A One, B Two, C Three et al." in rendered.html
    assert "A One, B Two, C Three, D Four, E Five<" in rendered.html
    assert "A One, B Two, C Three et al." in rendered.text


def test_matched_words_are_highlighted_with_an_inline_style(renderer, matches):
    match = matches[0]
    rendered = renderer.render_digest("a@example.org", ["pretraining", "diffusion"], [match], 1, NO_MORE)
    marks = re.findall(r'<mark\s+class="hl" style="([^"]+)"[^>]*>([^<]+)</mark>', rendered.html)
    words = {w for _, w in marks}
    title = match.paper.title
    assert {title[s:e] for s, e in match.highlights["title"]} <= words
    assert all("background-color" in style for style, _ in marks)


def test_untrusted_text_is_escaped_and_only_http_links_are_made(renderer):
    paper = make_paper(
        title="<script>alert(1)</script> Pretraining",
        abstract='<img src=x onerror="alert(2)"> pretraining & more',
        authors=['<b onclick="x">Mallory</b>'],
        github_repo="javascript:alert(3)",
        project_page="https://example.org/ok?a=1&b=\"2\"",
    )
    match = Match(paper, 1.0, ("<i>pretraining</i>",), ("Pretraining",), {"title": ((26, 37),), "abstract": ((31, 42),)})
    rendered = renderer.render_digest("a<b>@example.org", ["<i>pretraining</i>"], [match], 1, NO_MORE)
    html = rendered.html
    assert "<script" not in html and "<img" not in html and "<b " not in html and "<i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "onerror=&#34;alert(2)&#34;" in html or "onerror=&quot;alert(2)&quot;" in html
    assert "javascript:" not in html
    assert 'href="https://example.org/ok?a=1&amp;b=&#34;2&#34;"' in html
    assert "<script>alert(1)</script> Pretraining" in rendered.text  # text/plain shows it as it is
    # every link in the page is http(s)
    assert all(a["href"].startswith(("http://", "https://")) for a in Elements(html).all("a"))


def test_links_that_are_not_http_are_refused(renderer, matches):
    bad = LINKS.__class__("javascript:alert(1)", LINKS.unsubscribe_url, LINKS.view_url, None)
    with pytest.raises(ValueError, match="settings_url"):
        renderer.render_digest("a@example.org", ["x"], matches[:1], 1, bad)


def test_more_link_when_the_limit_cut_the_list(renderer, matches):
    rendered = renderer.render_digest("a@example.org", ["pretraining", "diffusion"], matches[:10], 23, LINKS)
    text = Elements(rendered.html).visible_text
    assert "and 13 more matched your topics today." in text
    assert "See all 23 papers" in text
    assert f'href="{LINKS.more_url}"' in rendered.html
    assert "And 13 more matched your topics today. See all 23:" in rendered.text
    assert rendered.subject.startswith("23 new papers")

    within = renderer.render_digest("a@example.org", ["pretraining"], matches[:10], 10, LINKS)
    assert "more matched" not in within.html and "more matched" not in within.text


def test_footer_says_why_and_offers_settings_unsubscribe_view_and_privacy(renderer, matches, settings):
    rendered = renderer.render_digest("ana@example.org", ["pretraining", "diffusion"], matches[:3], 3, NO_MORE)
    for part in (Elements(rendered.html).visible_text, rendered.text):
        assert "ana@example.org subscribed to papers on: pretraining, diffusion" in part
        assert "No tracking pixels and no redirected links" in part
        assert settings.postal_address in part
    hrefs = [a["href"] for a in Elements(rendered.html).all("a")]
    for url in (LINKS.settings_url, LINKS.unsubscribe_url, LINKS.view_url):
        assert url in hrefs and url in rendered.text


def test_text_part_has_one_block_per_paper_with_title_authors_and_links(renderer, matches):
    shown = matches[:5]
    rendered = renderer.render_digest("a@example.org", ["pretraining", "diffusion"], shown, 5, NO_MORE)
    blocks = re.split(r"\n(?=\d+\. )", rendered.text.split("\n--\n")[0])[1:]
    assert len(blocks) == 5
    for rank, (block, match) in enumerate(zip(blocks, shown), 1):
        assert block.startswith(f"{rank}. {' '.join(match.paper.title.split())}")
        assert f"arXiv: {match.paper.abs_url}" in block
        assert f"PDF: {match.paper.pdf_url}" in block
        assert "<" not in block.replace("<", "", block.count("<") if "<" in match.paper.abstract else 0)
    assert all(len(line) <= 998 for line in rendered.text.splitlines())


def test_excerpts_are_capped_and_show_a_late_match():
    abstract = ("word " * 200) + "pretraining is here " + ("tail " * 50)
    start = abstract.index("pretraining")
    window = excerpt_window(abstract, [(start, start + 11)], 320)
    assert window[0] <= start and window[1] >= start + 11
    assert window[1] - window[0] <= 320
    assert excerpt_window("short", [], 320) == (0, 5)


def test_html_stays_under_the_clip_limit_however_long_the_titles(renderer):
    papers = [make_paper(title="Long " * 3000, abstract="x " * 5000) for _ in range(40)]
    matches = [Match(p, 1.0, ("long",), ()) for p in papers]
    rendered = renderer.render_digest("a@example.org", ["long"], matches, 40, LINKS)
    assert len(rendered.html.encode()) <= MAX_HTML_BYTES
    shown = rendered.html.count('class="card"')
    assert 1 <= shown < 40
    assert f"and {40 - shown} more" in Elements(rendered.html).visible_text


def test_two_subscribers_share_cards_but_not_highlights_or_links(renderer):
    papers = sample_papers()
    a = ranked(["diffusion"], papers)[:3]
    b = ranked(["pretraining"], papers)[:3]
    links_b = NO_MORE.__class__("http://digest.test/settings/b", "http://digest.test/unsubscribe/b", "http://digest.test/digest/b", None)
    first = renderer.render_digest("a@example.org", ["diffusion"], a, 3, NO_MORE)
    second = renderer.render_digest("b@example.org", ["pretraining"], b, 3, links_b)
    assert "b@example.org" not in first.html and "a@example.org" not in second.html
    assert "/unsubscribe/b" in second.html and "/unsubscribe/b" not in first.html
    marked_first = {w.lower() for w in re.findall(r"<mark[^>]*>([^<]+)</mark>", first.html)}
    marked_second = {w.lower() for w in re.findall(r"<mark[^>]*>([^<]+)</mark>", second.html)}
    assert any("diffusion" in w for w in marked_first) and not any("diffusion" in w for w in marked_second)


def test_nothing_matched_note(renderer, settings):
    rendered = renderer.render_empty("a@example.org", ["quantum gravity"], NO_MORE)
    assert rendered.subject == "Nothing new on quantum gravity · Nov 26"
    assert "Nothing matched your topics today" in Elements(rendered.html).visible_text
    assert LINKS.settings_url in rendered.text and LINKS.unsubscribe_url in rendered.html
    with pytest.raises(ValueError):
        renderer.render_digest("a@example.org", ["x"], [], 0, NO_MORE)


def test_full_edition_page_shows_every_match_without_a_more_link(settings, matches):
    html = render_full_edition_html(settings, EDITION, "a@example.org", ["pretraining", "diffusion"], matches, LINKS)
    assert html.count('class="card"') == len(matches) > 25
    assert "more matched" not in html


def test_stable_message_id_for_delivery(settings):
    assert make_message_id(42, EDITION, settings) == f"<digest-2026-11-26-42@{settings.sender_domain}>"


@given(st.text(alphabet=st.sampled_from("ab c\n\txyz\u2026"), max_size=400))
def test_text_excerpts_wrap_without_losing_a_word(text):
    wrapped = wrap(text, 20, "   ")
    assert wrapped.split() == text.split()
    for line in wrapped.splitlines():
        assert line.startswith("   ")
        assert len(line) <= 20 or " " not in line.strip()  # only a single over-long word may pass


def test_full_edition_page_shows_a_paper_as_it_is_now(settings):
    paper = make_paper(title="Pretraining, revisited", upvotes=3, updated_at=datetime(2026, 11, 26, 8, tzinfo=timezone.utc))
    match = Match(paper, 1.0, ("pretraining",), ())
    before = render_full_edition_html(settings, EDITION, "a@example.org", ["pretraining"], [match], LINKS)
    paper.upvotes, paper.updated_at = 40, datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    after = render_full_edition_html(settings, EDITION, "a@example.org", ["pretraining"], [match], LINKS)
    assert "3 upvotes" in before and "40 upvotes" in after and "3 upvotes" not in after


def test_code_and_project_links_when_known(renderer):
    known = make_paper(title="With code", github_repo="https://github.com/org/repo", project_page="https://org.github.io/p")
    unknown = make_paper(title="Without code")
    rendered = renderer.render_digest("a@example.org", ["x"], [Match(known, 2.0, ("x",), ()), Match(unknown, 1.0, ("x",), ())], 2, NO_MORE)
    links = {a["href"]: None for a in Elements(rendered.html).all("a")}
    assert "https://github.com/org/repo" in links and "https://org.github.io/p" in links
    blocks = rendered.text.split("\n2. ")
    assert "Code: https://github.com/org/repo" in blocks[0] and "Project page: https://org.github.io/p" in blocks[0]
    assert "Code:" not in blocks[1].split("\n--\n")[0]


_line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200)


# A link as safe_url accepts it: no spaces or control characters, anything else.
_link_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), max_size=120)


# The settings fixture is only read; each example makes its own renderer.
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=_line_text, abstract=_line_text, author=_line_text, topic=_line_text, liked=_line_text,
       link_tail=_link_text, with_topics=st.booleans(), email_local=st.from_regex(r"[a-z]{1,12}", fullmatch=True))
def test_the_text_part_encoded_card_by_card_is_the_text_encoded_whole(settings, title, abstract, author, topic, liked,
                                                                     link_tail, with_topics, email_local):
    """Each card's quoted-printable form is kept and reused across subscribers, the reader's own
    feedback links encoded per message between it and the next card; what a reader decodes must
    be exactly the text part, whatever the titles, abstracts, topics, liked titles and links hold,
    for a matched card, a suggestion and a trending pick alike."""
    from digest.mail.transfer_encoding import quoted_printable

    renderer = EditionRenderer(settings, EDITION)
    papers = [make_paper(title=title, abstract=abstract, authors=[author]), *sample_papers()[:3]]
    matches = [Match(papers[0], 1.0, (topic or "t",), ()), Match(papers[1], 1.0, (), (), resembles=liked or "x"),
               Match(papers[2], 1.0, (), ()), Match(papers[3], 1.0, (topic or "t",), (), resembles=liked or None)]
    links = replace(LINKS, feedback=lambda paper_id, action: f"http://digest.test/feedback/{action}/{paper_id}/{link_tail}")
    topics = [topic or "t"] if with_topics else []
    for cut in (matches, matches[1:], matches[:1], matches[2:]):  # the same cards at other ranks
        for card_links in (links, LINKS):  # with the links and without
            rendered = renderer.render_digest(f"{email_local}@example.org", topics, cut, 9, card_links)
            assert rendered.text_qp == quoted_printable(rendered.text)
            if card_links is links:
                assert rendered.text.count("More like this: http://digest.test/feedback/more/") == len(cut)


@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=400))
def test_long_plain_lines_are_soft_broken_as_binascii_breaks_them(line):
    """quoted_printable cuts plain ASCII lines itself (URLs: every card's feedback links); the
    result must be binascii's, byte for byte."""
    import binascii

    from digest.mail.transfer_encoding import quoted_printable

    expected = "".join(binascii.b2a_qp(part.encode(), istext=True).decode().replace("\n", "\r\n") + "\r\n"
                       for part in line.splitlines()) if line else "\r\n"
    assert quoted_printable(line, remember=False) == expected == quoted_printable(line)


def test_a_digest_as_sent_carries_the_pre_encoded_text_and_decodes_to_it(renderer, matches, settings):
    rendered = renderer.render_digest("ana@example.org", ["pretraining", "diffusion"], matches[:10], len(matches), LINKS)
    assert rendered.text_qp is not None
    message = parse(to_bytes(build_message(rendered, "ana@example.org", settings), settings))
    assert body(message, "plain") == rendered.text
