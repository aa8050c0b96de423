"""What every source returns, the shape checks and the text normalisation applied at the door.

Every field of every item a source sends is untrusted. Items are checked against a declared shape
(pydantic, strict: 7 is not a title and "7" is not a vote count):
- a wrong type in what a paper is made of (id, title, abstract, authors) skips the item, with the
  reason, counted as skipped;
- a wrong type in an extra the paper can do without (votes, links, keywords, categories, dates) or
  in one entry of a list ignores that field or entry, with the reason, counted as ignored;
- null or absent is simply missing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, ValidationInfo, WrapValidator

ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})(v\d+)?$")
_SPACE = re.compile(r"\s+")
# C0 and C1 controls, DEL and lone surrogates: PostgreSQL refuses NUL in text (SQLite stores it),
# a lone surrogate cannot be encoded as UTF-8, and the rest have no business in a title. The ones
# that are white space (tab, newlines, NEL...) become a space instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
INT32_MAX = 2**31 - 1  # the store's integer columns


def _drop_control(match: re.Match) -> str:
    return " " if match.group().isspace() else ""


def clean_text(value: str | None) -> str:
    """Drop control characters, collapse white space (arXiv hard-wraps) and keep Unicode (NFC).

    Markup is kept literally, as text: a title `<b>x</b>` is stored with its angle brackets and
    escaped wherever it is shown, so nothing a source sends is ever interpreted.
    """
    if value is None:
        return ""
    text = _CONTROL.sub(_drop_control, value)
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


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
    """An ISO-8601 instant in UTC; None when it is not one, or not one the store can hold."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # "0001-01-01T00:00+05:00" is before year 1 in UTC
        return None


def http_url_or_none(value: object) -> str | None:
    """One http(s) URL, else None: no other scheme, no white space or control character inside."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if url.lower().startswith(("http://", "https://")) and not _CONTROL.search(url) and not _SPACE.search(url):
        return url
    return None


# --- shapes -------------------------------------------------------------------------------------


class Shape(BaseModel):
    """An item of a source's answer as it must look; keys not declared are not read."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"])
    return f"{where + ': ' if where else ''}{error['msg']}, got {type(error['input']).__name__}"


def _ignore_if_invalid(value, handler, info: ValidationInfo):
    try:
        return handler(value)
    except ValidationError as exc:
        ignored = (info.context or {}).get("ignored")
        if ignored is not None:
            ignored.append(f"{info.field_name or 'entry'}: {_describe(exc.errors()[0])}")
        return None


# A field (or list entry) that is dropped, with its reason, when its type is wrong.
Ignorable = WrapValidator(_ignore_if_invalid)
OptionalText = Annotated[str | None, Ignorable]
Texts = list[Annotated[str | None, Ignorable]]  # a list it must be; an entry that is not a string is dropped
OptionalTexts = Annotated[Texts | None, Ignorable]
OptionalCount = Annotated[Annotated[int, Field(ge=0, le=INT32_MAX)] | None, Ignorable]


def _iso_instant(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or parse_datetime(value) is None:
        raise ValueError("not an ISO-8601 date and time")
    return parse_datetime(value)


OptionalInstant = Annotated[datetime | None, PlainValidator(_iso_instant), Ignorable]


def texts(values: Iterable[str | None] | None) -> list[str]:
    """The non-empty cleaned strings of a list field (entries of a wrong type are already None)."""
    cleaned = (clean_text(v) for v in values or [])
    return [v for v in cleaned if v]


def parse_each(
    labelled: Iterable[tuple[str, object]], parse: Callable[[object, list[str]], PaperRecord]
) -> tuple[list[PaperRecord], list[str], list[str]]:
    """Parse every (label, item): (papers, skipped, ignored). A bad item (ValueError, which includes
    a shape that does not hold) is skipped with its label and reason; the rest is kept."""
    papers, skipped, ignored = [], [], []
    for label, item in labelled:
        notes: list[str] = []
        try:
            papers.append(parse(item, notes))
        except ValidationError as exc:
            skipped.append(f"{label}: {_describe(exc.errors()[0])}")
        except ValueError as exc:
            skipped.append(f"{label}: {exc}")
        else:
            ignored.extend(f"{label}: {note}" for note in notes)
    return papers, skipped, ignored


def check_shape(shape: type[Shape], item: object, ignored: list[str]):
    """Validate one item against its shape; fields ignored on the way are noted in `ignored`."""
    return shape.model_validate(item, context={"ignored": ignored})


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
    ignored: list[str] = field(default_factory=list)  # one reason per field of the wrong type dropped
    notes: list[str] = field(default_factory=list)  # what the operator should know (shown by the CLI)

    def add(self, papers: list[PaperRecord], skipped: list[str], ignored: list[str]) -> None:
        self.papers.extend(papers)
        self.skipped.extend(skipped)
        self.ignored.extend(ignored)


class Source(Protocol):
    name: str

    def fetch(self, day: date) -> FetchResult: ...
