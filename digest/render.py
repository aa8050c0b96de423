"""Emails as subject, HTML and plain text, built so that each subscriber costs a string join.

How it stays cheap: every template under templates/email/<name>/ is rendered by Jinja2 ONCE (per
template, or per edition for the digest) as a *skeleton*, in which whatever differs per email is a
named slot (`{{ slot("view_url") }}`) and whatever repeats is a named part
(`{% call part("card") %}...{% endcall %}`). The skeleton is inlined by premailer once, then cut at
its slots into a `Fragment`. Per email we only escape the subscriber's values and join strings.
Paper cards are filled with their paper's fields once per edition; per subscriber only the rank,
the highlighted title and excerpt and the matched topics go in.

Escaping: Jinja autoescapes what a template renders itself; every value put into a slot of an HTML
fragment goes through `markupsafe.escape` here (`_html`), links only when they are http(s).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from premailer import Premailer

from digest.config import REPO_ROOT, Settings, get_settings
from digest.matching.results import Match, Span
from digest.models import Paper
from digest.transfer_encoding import quoted_printable

TEMPLATES_DIR = REPO_ROOT / "templates" / "email"

# Gmail clips messages whose HTML passes ~102 KB; stay clear of it with a margin.
MAX_HTML_BYTES = 100_000
MAX_CARDS = 25  # whatever a subscriber's limit, more cards than this go behind "and N more"
EXCERPT_CHARS = 320
AUTHORS_SHOWN = 3  # past AUTHORS_MAX, show this many and "et al."
AUTHORS_MAX = 5
SUBJECT_TOPICS = 3
LINK_SEPARATOR = " &#183; "
CARD_CACHE_SIZE = 20_000
_CARDS_SLOT = "\x00"  # stands for the cards while the text around them is encoded

_SLOT_TOKEN = "__dpd_{}__"
_SLOT_RE = re.compile(r"__dpd_([a-z]+(?:_[a-z]+)*)__|<!--slot:([a-z_]+)-->")
# A part (or a sample) with no other part inside it: parts are cut innermost first.
_PART_RE = re.compile(
    r"<!--(part|sample):([a-z_]+)-->((?:(?!<!--(?:part|sample):).)*?)<!--/\1:\2-->", re.DOTALL
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    # `text` as a quoted-printable body (CRLF), when the renderer already had most of it encoded
    # (a digest's cards are encoded once each); the message writer encodes `text` otherwise.
    text_qp: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class DigestLinks:
    settings_url: str
    unsubscribe_url: str
    view_url: str
    more_url: str | None


# --- fragments: pre-rendered text cut at its slots ---------------------------------------------


@dataclass(frozen=True)
class Fragment:
    """Literal text with named holes: literals[0] slot[0] literals[1] ... literals[-1]."""

    literals: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Fragment:
        literals, names, pos = [], [], 0
        for found in _SLOT_RE.finditer(text):
            literals.append(text[pos : found.start()])
            names.append(found.group(1) or found.group(2))
            pos = found.end()
        literals.append(text[pos:])
        return cls(tuple(literals), tuple(names))

    def fill(self, values: Mapping[str, str]) -> str:
        literals = self.literals
        out = [literals[0]]
        for i, name in enumerate(self.names, 1):
            out.append(values[name])
            out.append(literals[i])
        return "".join(out)

    def bind(self, values: Mapping[str, str]) -> Fragment:
        """Fill some slots now (per edition), leave the others for later (per subscriber)."""
        literals, names = [self.literals[0]], []
        for i, name in enumerate(self.names, 1):
            if name in values:
                literals[-1] += values[name] + self.literals[i]
            else:
                names.append(name)
                literals.append(self.literals[i])
        return Fragment(tuple(literals), tuple(names))


@dataclass(frozen=True)
class Skeleton:
    main: Fragment
    parts: Mapping[str, Fragment]  # repeated fragments; each also left a slot of its name in its parent
    samples: Mapping[str, Fragment]  # style samples cut out of the page (e.g. the highlight mark)


def _slot(name: str) -> Markup:
    return Markup(_SLOT_TOKEN.format(name))


def _part(name: str, caller) -> Markup:
    # caller() is Markup in HTML templates (already escaped) and str in text ones (no escaping).
    return Markup(f"<!--part:{name}-->{caller()}<!--/part:{name}-->")


def _sample(name: str, caller) -> Markup:
    return Markup(f"<!--sample:{name}-->{caller()}<!--/sample:{name}-->")


def _cut(text: str) -> Skeleton:
    parts: dict[str, Fragment] = {}
    samples: dict[str, Fragment] = {}

    def take(found: re.Match) -> str:
        kind, name, body = found.groups()
        target = parts if kind == "part" else samples
        if name in target:
            raise ValueError(f"template defines the {kind} {name!r} twice")
        target[name] = Fragment.parse(body)
        return f"<!--slot:{name}-->" if kind == "part" else ""

    while True:
        text, count = _PART_RE.subn(take, text)
        if not count:
            break
    return Skeleton(Fragment.parse(text), parts, samples)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(slot=_slot, part=_part, sample=_sample)
    return env


def inline_css(html: str) -> str:
    """premailer: rules into style="" attributes; @media rules stay in a <style> in the head.
    Classes are kept so that those media rules (mobile, dark mode) still find their elements."""
    return Premailer(
        html,
        allow_network=False,
        disable_link_rewrites=True,
        disable_validation=True,
        remove_classes=False,
        keep_style_tags=False,
        strip_important=False,  # the @media rules left in <head> need their !important
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def _skeleton(template: str, context: Mapping[str, object], *, inline: bool) -> Skeleton:
    rendered = _environment().get_template(template).render(**context)
    if inline:
        rendered = inline_css(rendered).encode("ascii", "xmlcharrefreplace").decode("ascii")
    else:  # text: no blank lines at the ends, one newline last
        rendered = rendered.strip() + "\n"
    return _cut(rendered)


# --- values: escaping, links, excerpts -------------------------------------------------------


def _html(value: object) -> str:
    """Escaped, and ASCII: other characters become references (&#252;), so that the whole page is
    ASCII and can travel as 7bit without an encoding pass over every message."""
    escaped = str(escape(value))
    return escaped if escaped.isascii() else escaped.encode("ascii", "xmlcharrefreplace").decode("ascii")


# An absolute http(s) URL with a host, without spaces or control characters anywhere.
_HTTP_URL = re.compile(r"(?i)https?://[^/?#\s\x00-\x1f\x7f]+(?:[/?#][^\s\x00-\x1f\x7f]*)?")


def safe_url(value: str | None) -> str | None:
    """The link if it is an absolute http(s) URL without spaces or control characters, else None."""
    if not value:
        return None
    value = value.strip()
    return value if _HTTP_URL.fullmatch(value) else None


def _required_url(name: str, value: str) -> str:
    url = safe_url(value)
    if url is None:
        raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
    return url


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@lru_cache(maxsize=8192)  # topics and titles repeat across an edition's subscribers
def one_line(value: str) -> str:
    """Untrusted text bound for a subject or a text line: no control characters, single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def short_authors(authors: Sequence[str]) -> str:
    names = [one_line(str(a)) for a in authors if str(a).strip()]
    if len(names) > AUTHORS_MAX:
        return ", ".join(names[:AUTHORS_SHOWN]) + " et al."
    return ", ".join(names)


def clean_spans(spans: Iterable[Span] | None, length: int) -> list[Span]:
    """Sorted, clipped to the text, overlapping spans merged: matching hands offsets, we trust none."""
    result: list[Span] = []
    for start, end in sorted((max(0, int(s)), min(length, int(e))) for s, e in (spans or ())):
        if end <= start:
            continue
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return result


def excerpt_window(text: str, spans: Sequence[Span], limit: int = EXCERPT_CHARS) -> tuple[int, int]:
    """Where to cut the abstract: the beginning, unless the first match lies beyond it; whole words."""
    if len(text) <= limit:
        return 0, len(text)
    start = 0
    if spans and spans[0][1] > limit - 40:
        start = max(0, spans[0][0] - limit // 3)
        if start:
            space = text.find(" ", start, spans[0][0])
            start = space + 1 if space >= 0 else spans[0][0]
    end = min(len(text), start + limit)
    if end < len(text):
        space = text.rfind(" ", start, end)
        if space > start:
            end = space
    return start, end


def highlight(text: str, spans: Sequence[Span], mark_open: str, mark_close: str) -> str:
    out, pos = [], 0
    for start, end in spans:
        out.append(_html(text[pos:start]))
        out.append(mark_open + _html(text[start:end]) + mark_close)
        pos = end
    out.append(_html(text[pos:]))
    return "".join(out)


def wrap(text: str, width: int, indent: str) -> str:
    """Greedy word wrap in one regex pass (textwrap costs ~10x more and this runs per excerpt):
    lines of at most `width` characters, a longer word alone on its line, no word lost."""
    room = width - len(indent)
    pattern = _wrap_patterns.get(room)
    if pattern is None:
        pattern = _wrap_patterns[room] = re.compile(rf"(\S.{{0,{room - 1}}})(?: |$)|(\S+) ?")
    words = " ".join(text.split())
    return "\n".join(indent + (a or b) for a, b in pattern.findall(words))


_wrap_patterns: dict[int, re.Pattern] = {}


def _window_spans(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    return [(max(s, start) - start, min(e, end) - start) for s, e in spans if e > start and s < end]


def topic_phrase(topics: Sequence[str]) -> str:
    shown = [one_line(t) for t in topics[:SUBJECT_TOPICS]]
    rest = len(topics) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


def matched_topics(topics: Sequence[str], matches: Sequence[Match]) -> list[str]:
    """The subscriber's topics that matched something, in the subscriber's order."""
    hit = {t for m in matches for t in m.topics}
    ordered = [t for t in topics if t in hit]
    return ordered + sorted(hit - set(ordered)) if hit else list(topics)


def product_name(settings: Settings) -> str:
    name, _ = parseaddr(settings.sender)
    return one_line(name) or "Daily Papers Digest"


def _static_context(settings: Settings, edition: date | None) -> dict[str, object]:
    return {
        "product_name": product_name(settings),
        "postal_address": settings.postal_address,
        "date_label": f"{edition:%A}, {edition.day} {edition:%B %Y}" if edition else "",
        # short enough to sit beside the product name on a 320 px phone without a media query
        "masthead_date": f"{edition:%a} {edition.day} {edition:%b %Y}" if edition else "",
        "short_date": f"{edition:%b} {edition.day}" if edition else "",
    }


# --- the digest, per edition ------------------------------------------------------------------


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
        context = _static_context(settings, edition)
        self._digest_html = _skeleton("digest/body.html", context, inline=True)
        self._digest_text = _skeleton("digest/body.txt", context, inline=False)
        self._digest_subject = _skeleton("digest/subject.txt", context, inline=False).main
        self._empty_html = _skeleton("empty/body.html", context, inline=True).main
        self._empty_text = _skeleton("empty/body.txt", context, inline=False).main
        self._empty_subject = _skeleton("empty/subject.txt", context, inline=False).main
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
                "abs_url": _html(abs_url),
                "authors": _html(authors),
                "votes_badge": html_parts["votes_badge"].fill(
                    {"upvotes": f"{upvotes} upvote{'s' if upvotes != 1 else ''}"}
                )
                if upvotes
                else "",
                "link": LINK_SEPARATOR.join(
                    html_parts["link"].fill({"href": _html(url), "label": _html(label)}) for label, url in links
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
            paper.abstract[start:end], _window_spans(spans, start, end), self._mark_open, self._mark_close
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
                "topic_badge": "".join(self._topic_badge.fill({"topic": _html(t)}) for t in topics),
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
            "settings_url": _required_url("settings_url", links.settings_url),
            "unsubscribe_url": _required_url("unsubscribe_url", links.unsubscribe_url),
            "view_url": _required_url("view_url", links.view_url),
        }
        more_url = _required_url("more_url", links.more_url) if links.more_url else None
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
                {"more_count": str(total - len(shown)), "total": str(total), "more_url": _html(more_url)}
            )
        return skeleton.main.fill(
            {
                "subject": _html(subject),
                "headline": _html(headline),
                "summary": _html(summary),
                "card": "".join(cards),
                "more": more,
                "email": _html(email),
                "topics": _html(", ".join(one_line(t) for t in topics)),
                **{name: _html(url) for name, url in urls.items()},
            }
        )

    def render_empty(self, email: str, topics: Sequence[str], links: DigestLinks) -> RenderedEmail:
        """The short "nothing matched today" note, for subscribers who asked for it."""
        urls = {
            "settings_url": _required_url("settings_url", links.settings_url),
            "unsubscribe_url": _required_url("unsubscribe_url", links.unsubscribe_url),
            "view_url": _required_url("view_url", links.view_url),
        }
        subject = self._empty_subject.fill({"topic_phrase": topic_phrase(list(topics))}).strip()
        headline = "Nothing matched your topics today"
        topic_text = ", ".join(one_line(t) for t in topics)
        html = self._empty_html.fill(
            {
                "subject": _html(subject),
                "headline": _html(headline),
                "email": _html(email),
                "topics": _html(topic_text),
                **{name: _html(url) for name, url in urls.items()},
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
    """The web page behind "view in browser" and "and N more": the same digest with every match,
    no card limit, no size cap and no "more" link. Returns a whole HTML document."""
    renderer = edition_renderer(settings, edition)
    page_links = DigestLinks(links.settings_url, links.unsubscribe_url, links.view_url, None)
    if not matches:
        return renderer.render_empty(email, topics, page_links).html
    return renderer.render_digest(
        email, topics, matches, len(matches), page_links, max_cards=None, max_bytes=None
    ).html


# --- any other email: templates/email/<name>/ -------------------------------------------------


@dataclass(frozen=True)
class _CompiledEmail:
    subject: Skeleton
    text: Skeleton
    html: Skeleton


@lru_cache(maxsize=32)
def _compiled(name: str, settings: Settings) -> _CompiledEmail:
    if not re.fullmatch(r"[a-z_]+", name) or not (TEMPLATES_DIR / name / "body.html").is_file():
        raise ValueError(f"no email template {name!r} under {TEMPLATES_DIR}")
    context = _static_context(settings, None)
    return _CompiledEmail(
        subject=_skeleton(f"{name}/subject.txt", context, inline=False),
        text=_skeleton(f"{name}/body.txt", context, inline=False),
        html=_skeleton(f"{name}/body.html", context, inline=True),
    )


def _fill_generic(skeleton: Skeleton, context: Mapping[str, object], name: str, *, html: bool) -> str:
    convert = _html if html else (lambda v: str(v))
    values: dict[str, str] = {}
    for slot in skeleton.main.names:
        if slot not in context:
            raise TypeError(f"email {name!r} needs {slot}=...")
        value = context[slot]
        if slot in skeleton.parts:
            part = skeleton.parts[slot]
            items = [value] if isinstance(value, str) else list(value)  # type: ignore[arg-type]
            values[slot] = "".join(part.fill({"item": convert(item)}) for item in items)
        elif slot.endswith("_url"):
            values[slot] = convert(_required_url(slot, str(value)))
        else:
            values[slot] = convert(value)
    return skeleton.main.fill(values)


def render_email(name: str, settings: Settings | None = None, **context) -> RenderedEmail:
    """Any email with a folder under templates/email/ (e.g. "confirm"), in the digest's look.
    Compiled and inlined once per template; each call only escapes and joins its values:
    render_email("confirm", email=..., confirm_url=..., topics=[...])."""
    settings = settings or get_settings()
    compiled = _compiled(name, settings)
    subject = one_line(_fill_generic(compiled.subject, context, name, html=False))
    page_context = {"subject": subject, **context}
    return RenderedEmail(
        subject=subject,
        html=_fill_generic(compiled.html, page_context, name, html=True),
        text=_fill_generic(compiled.text, context, name, html=False),
    )


# --- preview: one subscriber's digest as it would be sent -----------------------------------


@dataclass(frozen=True)
class Preview:
    rendered: RenderedEmail
    edition: date
    matched: int  # how many papers matched in all
    shown: int  # how many cards the email carries (the subscriber's limit)


def preview_digest(session, settings: Settings, email: str, edition: date | None = None) -> Preview:
    """What `email` would receive for `edition` (default: the newest edition in the store), built
    the way delivery builds it: the real matcher, the subscriber's limit and signed links. When
    nothing matched, the "nothing matched" note, whatever the subscriber chose about it."""
    from sqlalchemy import func, select

    from digest.errors import DigestError
    from digest.links import settings_url, unsubscribe_url, view_url
    from digest.matching import EditionIndex, rank
    from digest.models import Paper
    from digest.subscriptions import find_subscriber

    subscriber = find_subscriber(session, email)
    if subscriber is None:
        raise DigestError(f"no subscriber with the address {email!r} (see `digest subscribe`)")
    if edition is None:
        edition = session.scalar(select(func.max(Paper.edition)))
        if edition is None:
            raise DigestError("no papers in the store yet: run `digest fetch` first")
    papers = list(session.scalars(select(Paper).where(Paper.edition == edition).order_by(Paper.id)))
    if not papers:
        raise DigestError(f"no papers in the edition of {edition.isoformat()}")
    topics = [t.query for t in subscriber.topics]
    matches = rank(EditionIndex.build(papers), topics)
    shown = matches[: max(subscriber.max_papers, 1)]
    view = view_url(subscriber, edition, settings)
    links = DigestLinks(
        settings_url=settings_url(subscriber, settings),
        unsubscribe_url=unsubscribe_url(subscriber, settings),
        view_url=view,
        more_url=view if len(matches) > len(shown) else None,
    )
    renderer = edition_renderer(settings, edition)
    if shown:
        rendered = renderer.render_digest(subscriber.email, topics, shown, len(matches), links)
    else:
        rendered = renderer.render_empty(subscriber.email, topics, links)
    return Preview(rendered, edition, len(matches), len(shown))
