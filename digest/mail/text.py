"""Untrusted values made fit for an email: escaped for HTML (ASCII only), one-lined for subjects
and text, links only when they are http(s), abstracts cut around their first match and wrapped.

Jinja autoescapes what a template renders itself; every value put into a slot of an HTML fragment
goes through `escape_html`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date
from email.utils import parseaddr
from functools import lru_cache

from markupsafe import escape

from digest.config import Settings
from digest.matching.results import Match, Span

EXCERPT_CHARS = 320
AUTHORS_SHOWN = 3  # past AUTHORS_MAX, show this many and "et al."
AUTHORS_MAX = 5
SUBJECT_TOPICS = 3


def escape_html(value: object) -> str:
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


def required_url(name: str, value: str) -> str:
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
        out.append(escape_html(text[pos:start]))
        out.append(mark_open + escape_html(text[start:end]) + mark_close)
        pos = end
    out.append(escape_html(text[pos:]))
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


def window_spans(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    return [(max(s, start) - start, min(e, end) - start) for s, e in spans if e > start and s < end]


def topic_phrase(topics: Sequence[str]) -> str:
    shown = [one_line(t) for t in topics[:SUBJECT_TOPICS]]
    rest = len(topics) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


TRENDING = "the day's trending papers"


def subscription_phrase(topics: Sequence[str], *, confirming: bool = False) -> str:
    """What a reader signed up for, as the end of a sentence: their topics, or, with none, the
    day's trending papers (a reader without topics gets the edition's most upvoted papers)."""
    if confirming:
        if not topics:
            return (f"a digest of {TRENDING}: the most upvoted new papers each morning, no topics needed"
                    " (you can add topics later from the settings link in every email).")
        return "a digest of new papers on these topics:"
    return "papers on: " + ", ".join(one_line(t) for t in topics) if topics else TRENDING


def upvotes_phrase(upvotes: int) -> str:
    return f"{upvotes} upvote{'s' if upvotes != 1 else ''}" if upvotes else "no upvotes yet"


def matched_topics(topics: Sequence[str], matches: Sequence[Match]) -> list[str]:
    """The subscriber's topics that matched something, in the subscriber's order."""
    hit = {t for m in matches for t in m.topics}
    ordered = [t for t in topics if t in hit]
    return ordered + sorted(hit - set(ordered)) if hit else list(topics)


def product_name(settings: Settings) -> str:
    name, _ = parseaddr(settings.sender)
    return one_line(name) or "Daily Papers Digest"


def static_context(settings: Settings, edition: date | None) -> dict[str, object]:
    return {
        "product_name": product_name(settings),
        "postal_address": settings.postal_address,
        "date_label": f"{edition:%A}, {edition.day} {edition:%B %Y}" if edition else "",
        # short enough to sit beside the product name on a 320 px phone without a media query
        "masthead_date": f"{edition:%a} {edition.day} {edition:%b %Y}" if edition else "",
        "short_date": f"{edition:%b} {edition.day}" if edition else "",
    }

