"""What every source returns, and the text normalisation applied at the door."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Protocol

ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})(v\d+)?$")
_SPACE = re.compile(r"\s+")


def clean_text(value: object) -> str:
    """Collapse white space (arXiv hard-wraps) and keep Unicode.

    Markup is kept literally, as text: a title `<b>x</b>` is stored with its angle brackets and
    escaped wherever it is shown, so nothing a source sends is ever interpreted.
    """
    if value is None:
        return ""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", str(value))).strip()


def normalise_arxiv_id(value: object) -> str | None:
    """'http://arxiv.org/abs/2607.01234v2' -> '2607.01234'; None when it is not an arXiv id."""
    if not isinstance(value, str):
        return None
    candidate = value.strip().rsplit("/abs/", 1)[-1].removeprefix("arXiv:").removeprefix("oai:arXiv.org:")
    match = ARXIV_ID.match(candidate)
    if not match:
        return None
    return match.group(1)


def parse_datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def http_url_or_none(value: object) -> str | None:
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        return value.strip()
    return None


def parse_each(items, parse: Callable[[object], PaperRecord], label: str) -> tuple[list[PaperRecord], list[str]]:
    """Parse every item; a bad one (ValueError) is skipped with its position, the rest is kept."""
    papers, skipped = [], []
    for position, item in enumerate(items):
        try:
            papers.append(parse(item))
        except ValueError as exc:
            skipped.append(f"{label} {position}: {exc}")
    return papers, skipped


@dataclass
class PaperRecord:
    """A paper as one source sees it. Fields a source does not know stay None / empty."""

    id: str
    title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    published_at: datetime | None = None
    upvotes: int | None = None
    github_repo: str | None = None
    project_page: str | None = None
    keywords: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class FetchResult:
    source: str
    papers: list[PaperRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one reason per bad item, for the log


class Source(Protocol):
    name: str

    def fetch(self, day: date) -> FetchResult: ...
