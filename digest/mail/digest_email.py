"""The digest email, per edition: templates compiled, CSS inlined and paper cards filled once, so
that each subscriber costs a few string joins.

Paper cards are filled with their paper's fields once per edition; per subscriber only the rank,
the highlighted title and excerpt and the matched topics go in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from digest.config import Settings
from digest.mail.fragments import Fragment, Skeleton, skeleton
from digest.mail.rendered import DigestLinks, RenderedEmail
from digest.mail.text import (
    clean_spans,
    escape_html,
    excerpt_window,
    highlight,
    matched_topics,
    one_line,
    required_url,
    safe_url,
    short_authors,
    static_context,
    topic_phrase,
    window_spans,
    wrap,
)
from digest.mail.transfer_encoding import quoted_printable
from digest.matching.results import Match
from digest.models import Paper

# Gmail clips messages whose HTML passes ~102 KB; stay clear of it with a margin.
MAX_HTML_BYTES = 100_000
MAX_CARDS = 25  # whatever a subscriber's limit, more cards than this go behind "and N more"
LINK_SEPARATOR = " &#183; "
CARD_CACHE_SIZE = 20_000
_CARDS_SLOT = "\x00"  # stands for the cards while the text around them is encoded


@dataclass(frozen=True)
class _PreparedPaper:
    title: str
    title_line: str
    abstract: str
    html_card: Fragment  # left: rank, title, excerpt, topic_badge
    text_card: Fragment  # left: rank, topics, excerpt


def paper_links(paper: Paper) -> list[tuple[str, str]]:
    candidates = [
        ("arXiv", paper.abs_url),
        ("PDF", paper.pdf_url),
        ("Hugging Face", paper.hf_url),
        ("Code", paper.github_repo),
        ("Project page", paper.project_page),
    ]
    return [(label, url) for label, url in ((label, safe_url(u)) for label, u in candidates) if url]


class EditionRenderer:
    """Everything one edition's digests share, prepared once: templates compiled, CSS inlined,
    paper cards filled. `render_digest` is then a few string joins per subscriber."""

    def __init__(self, settings: Settings, edition: date):
        self.settings = settings
        self.edition = edition
        context = static_context(settings, edition)
        self._digest_html = skeleton("digest/body.html", context, inline=True)
        self._digest_text = skeleton("digest/body.txt", context, inline=False)
        self._digest_subject = skeleton("digest/subject.txt", context, inline=False).main
        self._empty_html = skeleton("empty/body.html", context, inline=True).main
        self._empty_text = skeleton("empty/body.txt", context, inline=False).main
        self._empty_subject = skeleton("empty/subject.txt", context, inline=False).main
        mark = self._digest_html.samples["mark"]
        # A line break inside the tag (valid HTML) keeps lines short however many words match,
        # so that the page can travel as 7bit (lines of at most 998 octets).
        self._mark_open, self._mark_close = mark.literals[0].replace("<mark ", "<mark\n", 1), mark.literals[-1]
        parts = self._digest_html.parts
        self._topic_badge = parts["topic_badge"]
        self._papers: dict[tuple, _PreparedPaper] = {}
        self._text_excerpts: dict[tuple[str, int, int], str] = {}
        # Subscribers who share the topics that matched a paper get the same card: keep it, with
        # only the rank left to fill. Bounded: cleared when full, it only saves work.
        self._cards_cache: dict[tuple, tuple[Fragment, Fragment]] = {}
        # A card's text, quoted-printable but for its first line (the only one with the rank): the
        # same card recurs across subscribers at any rank. Encoding piecewise equals encoding the
        # whole only when cards start and end on line boundaries and the rank sits on the first
        # line, which the text template is checked for here.
        self._encoded_rests: dict[Fragment, str] = {}
        self._encode_piecewise = self._cards_on_whole_lines(self._digest_text)

    # Cards are the same for every subscriber but for rank, highlights and matched topics.
    def _prepare(self, paper: Paper) -> _PreparedPaper:
        # updated_at: a renderer kept for the web page must not show a paper as it was hours ago
        key = (paper.id, paper.updated_at)
        prepared = self._papers.get(key)
        if prepared is not None:
            return prepared
        html_parts, text_parts = self._digest_html.parts, self._digest_text.parts
        links = paper_links(paper)
        abs_url = safe_url(paper.abs_url) or ""
        authors = short_authors(paper.authors or [])
        upvotes = int(paper.upvotes or 0)
        html_card = html_parts["card"].bind(
            {
                "abs_url": escape_html(abs_url),
                "authors": escape_html(authors),
                "votes_badge": html_parts["votes_badge"].fill(
                    {"upvotes": f"{upvotes} upvote{'s' if upvotes != 1 else ''}"}
                )
                if upvotes
                else "",
                "link": LINK_SEPARATOR.join(
                    html_parts["link"].fill({"href": escape_html(url), "label": escape_html(label)}) for label, url in links
                ),
            }
        )
        text_card = text_parts["card"].bind(
            {
                "authors": authors,
                "votes": f" · {upvotes} upvote{'s' if upvotes != 1 else ''}" if upvotes else "",
                "link": "".join(text_parts["link"].fill({"href": url, "label": label}) for label, url in links),
            }
        )
        title = paper.title or "(untitled)"
        prepared = _PreparedPaper(title, one_line(title), paper.abstract or "", html_card, text_card)
        self._papers[key] = prepared
        return prepared

    def prepare(self, papers: Iterable[Paper]) -> None:
        """Fill the cards of an edition's papers ahead of the first subscriber (optional)."""
        for paper in papers:
            self._prepare(paper)

    def _text_excerpt(self, paper_id: str, abstract: str, start: int, end: int) -> str:
        key = (paper_id, start, end)
        cached = self._text_excerpts.get(key)
        if cached is None:
            body = ("… " if start else "") + abstract[start:end] + (" …" if end < len(abstract) else "")
            cached = wrap(body, 72, "   ")
            self._text_excerpts[key] = cached
        return cached

    def _card(self, match: Match) -> tuple[Fragment, Fragment]:
        """One paper's card for one subscriber's highlights and topics; only the rank left open."""
        highlights = match.highlights or {}
        raw_title = tuple(map(tuple, highlights.get("title", ())))
        raw_abstract = tuple(map(tuple, highlights.get("abstract", ())))
        key = (match.paper.id, match.paper.updated_at, tuple(match.topics), raw_title, raw_abstract)
        cached = self._cards_cache.get(key)
        if cached is not None:
            return cached
        paper = self._prepare(match.paper)
        title_spans = clean_spans(raw_title, len(paper.title))
        spans = clean_spans(raw_abstract, len(paper.abstract))
        start, end = excerpt_window(paper.abstract, spans)
        excerpt = highlight(
            paper.abstract[start:end], window_spans(spans, start, end), self._mark_open, self._mark_close
        )
        if start:
            excerpt = "&#8230; " + excerpt
        if end < len(paper.abstract):
            excerpt += "&#160;&#8230;"  # never an ellipsis alone on the last line
        topics = [one_line(t) for t in match.topics]
        html_card = paper.html_card.bind(
            {
                "title": highlight(paper.title, title_spans, self._mark_open, self._mark_close),
                "excerpt": excerpt,
                "topic_badge": "".join(self._topic_badge.fill({"topic": escape_html(t)}) for t in topics),
            }
        )
        text_card = paper.text_card.bind(
            {
                "title": paper.title_line,
                "topics": ", ".join(topics) or "your topics",
                "excerpt": self._text_excerpt(match.paper.id, paper.abstract, start, end),
            }
        )
        if len(self._cards_cache) >= CARD_CACHE_SIZE:
            self._cards_cache.clear()
        self._cards_cache[key] = (html_card, text_card)
        return html_card, text_card

    @staticmethod
    def _cards_on_whole_lines(skeleton: Skeleton) -> bool:
        main, card = skeleton.main, skeleton.parts.get("card")
        if card is None or main.names.count("card") != 1:
            return False
        before = main.literals[main.names.index("card")]
        rank_on_first_line = card.names[:1] == ("rank",) and "rank" not in card.names[1:] and "\n" not in card.literals[0]
        return (before == "" or before.endswith("\n")) and card.literals[-1].endswith("\n") and rank_on_first_line

    def _encoded_card(self, card: Fragment, text: str) -> str:
        first, _, rest = text.partition("\n")
        encoded_rest = self._encoded_rests.get(card)
        if encoded_rest is None:
            if len(self._encoded_rests) >= CARD_CACHE_SIZE:
                self._encoded_rests.clear()
            encoded_rest = self._encoded_rests[card] = quoted_printable(rest) if rest else ""
        return quoted_printable(first + "\n") + encoded_rest

    def _cards(self, matches: Sequence[Match]) -> tuple[list[str], list[str], list[Fragment]]:
        """Per card: the HTML and the text with its rank, and the text's fragment (for encoding)."""
        html_cards, text_cards, text_fragments = [], [], []
        for rank, match in enumerate(matches, 1):
            html_card, text_card = self._card(match)
            number = str(rank)
            html_cards.append(html_card.fill({"rank": number}))
            text_cards.append(text_card.fill({"rank": number}))
            text_fragments.append(text_card)
        return html_cards, text_cards, text_fragments

    def render_digest(
        self,
        email: str,
        topics: Sequence[str],
        matches: Sequence[Match],
        total: int,
        links: DigestLinks,
        *,
        max_cards: int | None = MAX_CARDS,
        max_bytes: int | None = MAX_HTML_BYTES,
    ) -> RenderedEmail:
        """One subscriber's digest. `matches` are already ranked and cut to the subscriber's
        limit; `total` is how many matched in all (the rest is behind `links.more_url`)."""
        if not matches:
            raise ValueError("a digest needs at least one match; use render_empty for none")
        shown = list(matches[:max_cards] if max_cards else matches)
        total = max(total, len(matches))
        urls = {
            "settings_url": required_url("settings_url", links.settings_url),
            "unsubscribe_url": required_url("unsubscribe_url", links.unsubscribe_url),
            "view_url": required_url("view_url", links.view_url),
        }
        more_url = required_url("more_url", links.more_url) if links.more_url else None
        html_cards, text_cards, text_fragments = self._cards(shown)
        hit_topics = matched_topics(topics, shown)
        subject = self._digest_subject.fill(
            {
                "count_phrase": f"{total} new paper{'s' if total != 1 else ''}",
                "topic_phrase": topic_phrase(hit_topics),
            }
        ).strip()
        headline = f"{total} new paper{'s' if total != 1 else ''} matched your topics"
        while True:
            summary = self._summary(shown, total)
            html = self._digest_html_page(email, topics, subject, headline, summary, html_cards, total, more_url, urls, shown)
            if max_bytes is None or len(html) <= max_bytes // 4 or len(html.encode()) <= max_bytes:
                break
            if len(html_cards) == 1:
                raise ValueError("one paper card alone is larger than the HTML size cap")
            html_cards.pop(), text_cards.pop(), text_fragments.pop(), shown.pop()
        text = self._digest_text.main.fill(
            {
                "headline": headline,
                "summary": summary,
                "card": _CARDS_SLOT if self._encode_piecewise else "".join(text_cards),
                "more": self._digest_text.parts["more"].fill(
                    {"more_count": str(total - len(shown)), "total": str(total), "more_url": more_url}
                )
                if more_url and total > len(shown)
                else "",
                "email": one_line(email),
                "topics": ", ".join(one_line(t) for t in topics),
                **urls,
            }
        )
        if not self._encode_piecewise:
            return RenderedEmail(subject=subject, html=html, text=text)
        return self._with_encoded_text(subject, html, text, text_cards, text_fragments)

    def _with_encoded_text(self, subject: str, html: str, text: str, text_cards: list[str],
                           text_fragments: list[Fragment]) -> RenderedEmail:
        """The text part quoted-printable: the cards from their per-card encodings, the rest here."""
        head, slot, tail = text.partition(_CARDS_SLOT)
        if not slot or _CARDS_SLOT in tail:
            raise ValueError("the digest's text lost its cards")  # a value slipped a NUL past one_line
        encoded = [quoted_printable(head)] if head else []
        encoded.extend(map(self._encoded_card, text_fragments, text_cards))
        if tail:
            encoded.append(quoted_printable(tail))
        return RenderedEmail(subject=subject, html=html, text=head + "".join(text_cards) + tail,
                             text_qp="".join(encoded))

    @staticmethod
    def _summary(shown: Sequence[Match], total: int) -> str:
        counts: dict[str, int] = {}
        for match in shown:
            for topic in match.topics:
                counts[topic] = counts.get(topic, 0) + 1
        per_topic = ", ".join(f"{one_line(t)} ({n})" for t, n in counts.items())
        if total > len(shown):
            # The counts are of the papers in this email, and must not read as counts of all matches.
            best = f"The best {len(shown)} of {total}, ranked."
            return f"{best} In this email: {per_topic}." if per_topic else best
        return f"Ranked, best first. Matched: {per_topic}." if per_topic else "Ranked, best first."

    def _digest_html_page(self, email, topics, subject, headline, summary, cards, total, more_url, urls, shown) -> str:
        skeleton = self._digest_html
        more = ""
        if more_url and total > len(shown):
            more = skeleton.parts["more"].fill(
                {"more_count": str(total - len(shown)), "total": str(total), "more_url": escape_html(more_url)}
            )
        return skeleton.main.fill(
            {
                "subject": escape_html(subject),
                "headline": escape_html(headline),
                "summary": escape_html(summary),
                "card": "".join(cards),
                "more": more,
                "email": escape_html(email),
                "topics": escape_html(", ".join(one_line(t) for t in topics)),
                **{name: escape_html(url) for name, url in urls.items()},
            }
        )

    def render_page(self, email: str, topics: Sequence[str], matches: Sequence[Match], links: DigestLinks) -> str:
        """The web page behind "view in browser" and "and N more": the same digest with every
        match, no card limit, no size cap and no "more" link. Returns a whole HTML document."""
        page_links = DigestLinks(links.settings_url, links.unsubscribe_url, links.view_url, None)
        if not matches:
            return self.render_empty(email, topics, page_links).html
        return self.render_digest(email, topics, matches, len(matches), page_links, max_cards=None, max_bytes=None).html

    def render_empty(self, email: str, topics: Sequence[str], links: DigestLinks) -> RenderedEmail:
        """The short "nothing matched today" note, for subscribers who asked for it."""
        urls = {
            "settings_url": required_url("settings_url", links.settings_url),
            "unsubscribe_url": required_url("unsubscribe_url", links.unsubscribe_url),
            "view_url": required_url("view_url", links.view_url),
        }
        subject = self._empty_subject.fill({"topic_phrase": topic_phrase(list(topics))}).strip()
        headline = "Nothing matched your topics today"
        topic_text = ", ".join(one_line(t) for t in topics)
        html = self._empty_html.fill(
            {
                "subject": escape_html(subject),
                "headline": escape_html(headline),
                "email": escape_html(email),
                "topics": escape_html(topic_text),
                **{name: escape_html(url) for name, url in urls.items()},
            }
        )
        text = self._empty_text.fill(
            {"headline": headline, "email": one_line(email), "topics": topic_text, **urls}
        )
        return RenderedEmail(subject=subject, html=html, text=text)


@lru_cache(maxsize=8)
def edition_renderer(settings: Settings, edition: date) -> EditionRenderer:
    """A shared renderer per (settings, edition), for callers that render one page at a time."""
    return EditionRenderer(settings, edition)


def render_full_edition_html(
    settings: Settings,
    edition: date,
    email: str,
    topics: Sequence[str],
    matches: Sequence[Match],
    links: DigestLinks,
) -> str:
    """`EditionRenderer.render_page` with the process's shared renderer of that edition."""
    return edition_renderer(settings, edition).render_page(email, topics, matches, links)
