"""The digest email, per edition: templates compiled, CSS inlined and paper cards filled once, so
that each subscriber costs a few string joins.

Paper cards are filled with their paper's fields once per edition; per subscriber only the rank,
the highlighted title and excerpt, the card's reason (the matched topics, the liked paper it is
like, or its upvotes) and the reader's two signed feedback links go in. The links differ for every
reader: they are a slot of their own after the card's shared lines, so the card itself (and its
quoted-printable text) stays shared across readers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache

from digest.config import Settings
from digest.mail.fragments import Fragment, Skeleton, skeleton
from digest.mail.rendered import DigestLinks, FeedbackLinks, RenderedEmail
from digest.mail.text import (
    clean_spans,
    escape_html,
    excerpt_window,
    highlight,
    one_line,
    required_url,
    safe_url,
    short_authors,
    static_context,
    subscription_phrase,
    topic_phrase,
    upvotes_phrase,
    window_spans,
    wrap,
)
from digest.mail.transfer_encoding import quoted_printable, soft_broken
from digest.mail.wording import DigestWording
from digest.matching.results import Match
from digest.models import Paper

# Gmail clips messages whose HTML passes ~102 KB; stay clear of it with a margin.
MAX_HTML_BYTES = 100_000
MAX_CARDS = 25  # whatever a subscriber's limit, more cards than this go behind "and N more"
LINK_SEPARATOR = " &#183; "
CARD_CACHE_SIZE = 20_000
_CARDS_SLOT = "\x00"  # stands for the cards while the text around them is encoded
# A feedback link with only characters that need no escaping in an attribute (no & < > " '), no
# spaces or controls: such a link goes in as it is (the usual case: base URL and base64url token).
_PLAIN = r"https?://[A-Za-z0-9._~:/?#\[\]@!$()*+,;=%-]+"
_PLAIN_LINKS = re.compile(f"{_PLAIN} {_PLAIN}")  # both of a card's links at once


@dataclass(frozen=True)
class _PreparedPaper:
    title: str
    title_line: str
    abstract: str
    upvotes: int
    html_card: Fragment  # left: rank, title, excerpt, like, topic_badge, votes_badge, feedback
    text_card: Fragment  # left: rank, reason, excerpt, feedback


def _is_trending(match: Match) -> bool:
    """A pick by upvotes (a reader without topics): no topic matched it and it resembles nothing."""
    return not match.topics and match.resembles is None


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
        self._topic_badge, self._votes_badge, self._like = parts["topic_badge"], parts["votes_badge"], parts["like"]
        # The two links are joined into their literals directly (twice per card, per reader).
        self._feedback_html = self._feedback_literals(parts["feedback"])
        self._feedback_text = self._feedback_literals(self._digest_text.parts["feedback"])
        # Its text is two lines, "<label> <more_url>" and "<label> <less_url>": with plain links
        # their quoted-printable form is just the lines soft-broken (no encoder pass per card).
        t0, t1, t2 = self._feedback_text
        plain = all(x.isascii() and x.isprintable() and "=" not in x for x in (t0, t1[1:]))
        self._feedback_lines = (t0, t1[1:]) if plain and t1[:1] == "\n" and t2 == "\n" else None
        self._papers: dict[tuple, _PreparedPaper] = {}
        self._text_excerpts: dict[tuple[str, int, int], str] = {}
        # Subscribers who share the topics that matched a paper get the same card: keep it, with
        # only the rank left to fill. Bounded: cleared when full, it only saves work.
        self._cards_cache: dict[tuple, tuple[Fragment, Fragment]] = {}
        # A card's text, quoted-printable but for its first line (the only one with the rank) and
        # its feedback lines (the reader's own): the same card recurs across subscribers at any
        # rank. Encoding piecewise equals encoding the whole only when cards start and end on line
        # boundaries, the rank sits on the first line and the feedback links on whole lines of
        # their own, which the text template is checked for here (and each bound card in
        # _card_pieces).
        self._encoded_rests: dict[Fragment, tuple[str, str, str, dict[str, str]] | tuple[()]] = {}
        self._encode_piecewise = self._cards_on_whole_lines(self._digest_text)

    # Cards are the same for every subscriber but for rank, highlights, reason and feedback links.
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
        upvotes = max(int(paper.upvotes or 0), 0)
        html_card = html_parts["card"].bind(
            {
                "abs_url": escape_html(abs_url),
                "authors": escape_html(authors),
                "link": LINK_SEPARATOR.join(
                    html_parts["link"].fill({"href": escape_html(url), "label": escape_html(label)}) for label, url in links
                ),
            }
        )
        text_card = text_parts["card"].bind(
            {
                "authors": authors,
                "link": "".join(text_parts["link"].fill({"href": url, "label": label}) for label, url in links),
            }
        )
        title = paper.title or "(untitled)"
        prepared = _PreparedPaper(title, one_line(title), paper.abstract or "", upvotes, html_card, text_card)
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
        key = (match.paper.id, match.paper.updated_at, tuple(match.topics), match.resembles, raw_title, raw_abstract)
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
        # Why the card is here: the topics that matched, the liked paper it is like, or (a pick for
        # a reader without topics) its upvotes; the upvotes also stand beside the other reasons.
        trending = _is_trending(match)
        liked = one_line(match.resembles) if match.resembles else ""
        votes = upvotes_phrase(paper.upvotes) if paper.upvotes or trending else ""
        reasons = []
        if topics:
            reasons.append("Matched: " + ", ".join(topics))
        if liked:
            reasons.append(f"Like: {liked}")
        if votes:
            reasons.append(votes)
        html_card = paper.html_card.bind(
            {
                "title": highlight(paper.title, title_spans, self._mark_open, self._mark_close),
                "excerpt": excerpt,
                "like": self._like.fill({"liked_title": escape_html(liked)}) if liked else "",
                "topic_badge": "".join(self._topic_badge.fill({"topic": escape_html(t)}) for t in topics),
                "votes_badge": self._votes_badge.fill({"upvotes": votes}) if votes else "",
            }
        )
        text_card = paper.text_card.bind(
            {
                "title": paper.title_line,
                "reason": " · ".join(reasons),
                "excerpt": self._text_excerpt(match.paper.id, paper.abstract, start, end),
            }
        )
        if len(self._cards_cache) >= CARD_CACHE_SIZE:
            self._cards_cache.clear()
        self._cards_cache[key] = (html_card, text_card)
        return html_card, text_card

    @staticmethod
    def _cards_on_whole_lines(skeleton: Skeleton) -> bool:
        main, card, feedback = skeleton.main, skeleton.parts.get("card"), skeleton.parts.get("feedback")
        if card is None or feedback is None or main.names.count("card") != 1:
            return False
        before = main.literals[main.names.index("card")]
        rank_on_first_line = card.names[:1] == ("rank",) and "rank" not in card.names[1:] and "\n" not in card.literals[0]
        return ((before == "" or before.endswith("\n")) and card.literals[-1].endswith("\n") and rank_on_first_line
                and feedback.literals[-1].endswith("\n"))

    def _encoded_card(self, card: Fragment, rank: str, feedback: str, feedback_qp: str | None, text: str) -> str:
        """A card's text as quoted-printable: its first line (the rank) and its feedback links
        (the reader's own) encoded here, the lines between and after them once per card. Line by
        line encoding makes the joined pieces equal the whole when each piece is whole lines,
        which a card bound to exactly `rank ... \n <feedback> ...\n` is (checked once per card)."""
        pieces = self._encoded_rests.get(card)
        if pieces is None:
            if len(self._encoded_rests) >= CARD_CACHE_SIZE:
                self._encoded_rests.clear()
            pieces = self._encoded_rests[card] = self._card_pieces(card)
        if not pieces:
            return quoted_printable(text)
        first_rest, shared, tail, first_lines = pieces
        if feedback_qp is None:
            feedback_qp = quoted_printable(feedback, remember=False) if feedback else ""
        # The first line differs only by the rank, and a card recurs at the same few ranks.
        first = first_lines.get(rank)
        if first is None:
            first = first_lines[rank] = quoted_printable(card.literals[0] + rank + first_rest)
        return first + shared + feedback_qp + tail

    @staticmethod
    def _card_pieces(card: Fragment) -> tuple[str, str, str, dict[str, str]] | tuple[()]:
        """(the rest of the first line, the shared lines encoded, the closing lines encoded, the
        first line encoded by rank, filled as ranks come), or () when the bound card does not have
        that shape (then each message encodes it whole)."""
        if card.names != ("rank", "feedback") or "\n" in card.literals[0]:
            return ()
        middle, tail = card.literals[1], card.literals[2]
        cut = middle.find("\n") + 1
        if not cut or not middle.endswith("\n") or (tail and not tail.endswith("\n")):
            return ()
        shared = middle[cut:]
        return (middle[:cut], quoted_printable(shared) if shared else "", quoted_printable(tail) if tail else "", {})

    @staticmethod
    def _feedback_literals(part: Fragment) -> tuple[str, str, str]:
        if part.names != ("more_url", "less_url"):
            raise ValueError(f"the feedback part must hold more_url, then less_url; it holds {part.names}")
        return part.literals  # type: ignore[return-value]

    def _feedback_links(self, feedback: FeedbackLinks | None, paper_id: str) -> tuple[str, str, str | None]:
        """The reader's "More like this" and "Less like this" for one card: HTML, text, and the
        text as quoted-printable when that is cheap to know (None: encode the text)."""
        if feedback is None:
            return "", "", ""
        more, less = feedback(paper_id, "more"), feedback(paper_id, "less")
        encoded = None
        if _PLAIN_LINKS.fullmatch(f"{more} {less}"):
            html_more, html_less = more, less  # nothing in them that HTML would escape
            if self._feedback_lines and "=" not in more and "=" not in less:
                first, second = self._feedback_lines
                encoded = f"{soft_broken(first + more)}\r\n{soft_broken(second + less)}\r\n"
        else:
            more, less = required_url("feedback url", more), required_url("feedback url", less)
            html_more, html_less = escape_html(more), escape_html(less)
        (h0, h1, h2), (t0, t1, t2) = self._feedback_html, self._feedback_text
        return h0 + html_more + h1 + html_less + h2, t0 + more + t1 + less + t2, encoded

    def _cards(self, matches: Sequence[Match], feedback: FeedbackLinks | None) -> tuple[list[str], list[str], list[tuple]]:
        """Per card: the HTML and the text with its rank and feedback links, and what encoding the
        text needs (its shared fragment, rank and feedback text)."""
        html_cards, text_cards, text_pieces = [], [], []
        for rank, match in enumerate(matches, 1):
            html_card, text_card = self._card(match)
            number = str(rank)
            feedback_html, feedback_text, feedback_qp = self._feedback_links(feedback, match.paper.id)
            html_cards.append(html_card.fill({"rank": number, "feedback": feedback_html}))
            text_cards.append(text_card.fill({"rank": number, "feedback": feedback_text}))
            text_pieces.append((text_card, number, feedback_text, feedback_qp))
        return html_cards, text_cards, text_pieces

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
        limit; `total` is how many matched in all (the rest is behind `links.more_url`). A reader
        without `topics` reads a trending digest; cards without topics are suggestions (with
        `resembles`) or trending picks. `links.feedback` makes each card's two feedback links."""
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
        html_cards, text_cards, text_pieces = self._cards(shown, links.feedback)
        words = DigestWording(topics, shown, total)
        subject = self._digest_subject.fill({"lead": words.subject_lead()}).strip()
        subscription = subscription_phrase(topics)
        while True:
            words = DigestWording(topics, shown, total)
            headline, summary = words.headline(), words.summary()
            html = self._digest_html_page(email, subscription, subject, headline, summary, html_cards, total, more_url,
                                          urls, shown, words)
            if max_bytes is None or len(html) <= max_bytes // 4 or len(html.encode()) <= max_bytes:
                break
            if len(html_cards) == 1:
                raise ValueError("one paper card alone is larger than the HTML size cap")
            html_cards.pop(), text_cards.pop(), text_pieces.pop(), shown.pop()
        text = self._digest_text.main.fill(
            {
                "headline": headline,
                "summary": summary,
                "card": _CARDS_SLOT if self._encode_piecewise else "".join(text_cards),
                "more": self._digest_text.parts["more"].fill(
                    {"more_phrase": words.more_phrase(total - len(shown)).capitalize(), "total": str(total),
                     "more_url": more_url}
                )
                if more_url and total > len(shown)
                else "",
                "email": one_line(email),
                "subscription": subscription,
                **urls,
            }
        )
        if not self._encode_piecewise:
            return RenderedEmail(subject=subject, html=html, text=text)
        return self._with_encoded_text(subject, html, text, text_cards, text_pieces)

    def _with_encoded_text(self, subject: str, html: str, text: str, text_cards: list[str],
                           text_pieces: list[tuple]) -> RenderedEmail:
        """The text part quoted-printable: the cards from their per-card encodings, the rest here."""
        head, slot, tail = text.partition(_CARDS_SLOT)
        if not slot or _CARDS_SLOT in tail:
            raise ValueError("the digest's text lost its cards")  # a value slipped a NUL past one_line
        encoded = [quoted_printable(head)] if head else []
        encoded.extend(self._encoded_card(card, rank, feedback, feedback_qp, whole)
                       for (card, rank, feedback, feedback_qp), whole in zip(text_pieces, text_cards))
        if tail:
            encoded.append(quoted_printable(tail))
        return RenderedEmail(subject=subject, html=html, text=head + "".join(text_cards) + tail,
                             text_qp="".join(encoded))

    def _digest_html_page(self, email, subscription, subject, headline, summary, cards, total, more_url, urls, shown,
                          words) -> str:
        skeleton = self._digest_html
        more = ""
        if more_url and total > len(shown):
            more = skeleton.parts["more"].fill(
                {"more_phrase": escape_html(words.more_phrase(total - len(shown))), "total": str(total),
                 "more_url": escape_html(more_url)}
            )
        return skeleton.main.fill(
            {
                "subject": escape_html(subject),
                "headline": escape_html(headline),
                "summary": escape_html(summary),
                "card": "".join(cards),
                "more": more,
                "email": escape_html(email),
                "subscription": escape_html(subscription),
                **{name: escape_html(url) for name, url in urls.items()},
            }
        )

    def render_page(self, email: str, topics: Sequence[str], matches: Sequence[Match], links: DigestLinks) -> str:
        """The web page behind "view in browser" and "and N more": the same digest with every
        match, no card limit, no size cap and no "more" link (the feedback links stay). Returns a
        whole HTML document."""
        page_links = replace(links, more_url=None)
        if not matches:
            return self.render_empty(email, topics, page_links).html
        return self.render_digest(email, topics, matches, len(matches), page_links, max_cards=None, max_bytes=None).html

    def render_empty(self, email: str, topics: Sequence[str], links: DigestLinks) -> RenderedEmail:
        """The short "nothing matched today" note, for subscribers who asked for it (for a reader
        without topics: the edition had no papers)."""
        urls = {
            "settings_url": required_url("settings_url", links.settings_url),
            "unsubscribe_url": required_url("unsubscribe_url", links.unsubscribe_url),
            "view_url": required_url("view_url", links.view_url),
        }
        if topics:
            lead = f"Nothing new on {topic_phrase(list(topics))}"
            headline = "Nothing matched your topics today"
            message = f"None of the new papers matched your topics ({', '.join(one_line(t) for t in topics)})."
        else:
            lead = headline = "No new papers today"
            message = "Today's edition has no new papers, so there are no trending papers to send."
        subject = self._empty_subject.fill({"lead": lead}).strip()
        subscription = subscription_phrase(topics)
        html = self._empty_html.fill(
            {
                "subject": escape_html(subject),
                "headline": escape_html(headline),
                "message": escape_html(message),
                "email": escape_html(email),
                "subscription": escape_html(subscription),
                **{name: escape_html(url) for name, url in urls.items()},
            }
        )
        text = self._empty_text.fill(
            {"headline": headline, "message": message, "email": one_line(email), "subscription": subscription, **urls}
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
