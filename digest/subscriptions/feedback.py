"""A reader's marks on papers: "More like this" / "Less like this" from an email's links, and the
"Papers you like" a reader types on the settings page.

Rules decided here (each has a test):
- One mark per reader and paper (`Feedback`): recording the same choice twice changes nothing,
  the other choice switches it, undo deletes it, and undoing twice is harmless.
- Every change of a reader's marks bumps `Subscriber.feedback_version` (models are cached by
  it); a press that changes nothing bumps nothing, so a reader's model is not refitted for it.
- A reader who unsubscribed records nothing (NotSubscribed): their marks stay as they were.
- "Papers you like": one arXiv id or abs/pdf/Hugging Face link a line, at most MAX_LIKED_LINES;
  a bad line gets its own error and the others are saved. Papers not in the store are looked up
  by id on the arXiv API with the fetch's client, limits and politeness, outside any database
  write (SQLite: no write lock held across the network).
- A paper looked up by id gets its arXiv publication day (UTC) as edition, not today's: an
  edition is "the new papers of that day", and a paper one reader liked (often months old) is
  not news for everyone whose topics match it. Its publication day is in the past, in an edition
  already sent (or never to be sent), so it joins no digest as new; without a publication date
  the month of its id (2602.01234: February 2026) stands in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import httpx
from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.db import session_scope
from digest.errors import DigestError, SourceError
from digest.fetch import http_client
from digest.ingest import store_papers
from digest.models import Feedback, Paper, Subscriber, SubscriberStatus
from digest.sources.arxiv import lookup_source
from digest.sources.base import PaperRecord, normalise_arxiv_id

log = logging.getLogger(__name__)

MAX_LIKED_LINES = 50
MAX_LINE_LENGTH = 300
SOURCES = ("email", "settings")


class NotSubscribed(DigestError):
    """The reader unsubscribed: a mark would teach a digest they no longer receive."""


class PaperGone(DigestError):
    """The paper is not (or no longer) in the store."""


def _bump(subscriber: Subscriber) -> None:
    # In SQL (feedback_version + 1), so two changes committed at once both count.
    subscriber.feedback_version = Subscriber.feedback_version + 1


def _check_subscribed(subscriber: Subscriber) -> None:
    if subscriber.status == SubscriberStatus.unsubscribed:
        raise NotSubscribed("this subscription was ended: subscribe again on the home page to have your marks count")


def _upsert(session: Session, subscriber: Subscriber, paper_id: str, liked: bool, source: str, now: datetime) -> bool:
    """Insert the mark, or switch an existing one to `liked`; True when a row changed. One
    statement, so two presses racing each other make one row (no unique-key error)."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
    statement = insert(Feedback).values(subscriber_id=subscriber.id, paper_id=paper_id, liked=liked, source=source,
                                        created_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[Feedback.subscriber_id, Feedback.paper_id],
        set_={"liked": statement.excluded.liked, "source": statement.excluded.source,
              "created_at": statement.excluded.created_at},
        where=Feedback.liked != statement.excluded.liked,
    ).returning(Feedback.paper_id)
    return session.execute(statement).first() is not None


def paper_of(session: Session, paper_id: str) -> Paper:
    """The paper a feedback link names; PaperGone when the store no longer has it."""
    paper = session.get(Paper, paper_id)
    if paper is None:
        raise PaperGone(f"paper {paper_id} is not in the store")
    return paper


def check_subscribed(subscriber: Subscriber) -> None:
    """NotSubscribed for a reader who unsubscribed: the feedback page says so before any button."""
    _check_subscribed(subscriber)


def record(session: Session, subscriber: Subscriber, paper_id: str, liked: bool, *, source: str = "email",
           now: datetime | None = None) -> bool:
    """Mark the paper "More like this" (liked) or "Less like this"; True when the mark changed.
    NotSubscribed for a reader who unsubscribed, PaperGone for a paper not in the store."""
    if source not in SOURCES:
        raise ValueError(f"unknown feedback source {source!r}")
    _check_subscribed(subscriber)
    paper_of(session, paper_id)
    changed = _upsert(session, subscriber, paper_id, liked, source, now or datetime.now(UTC))
    if changed:
        _bump(subscriber)
    session.flush()
    session.expire_all()  # the ORM's copies of the marks (and the version) are read again
    return changed


def remove(session: Session, subscriber: Subscriber, paper_id: str) -> bool:
    """Delete the reader's mark on this paper (the settings page's "Remove"); True when there was
    one. Allowed whatever the reader's status: it is their data."""
    gone = session.execute(
        sql_delete(Feedback).where(Feedback.subscriber_id == subscriber.id, Feedback.paper_id == paper_id)
        .returning(Feedback.paper_id)
    ).first() is not None
    if gone:
        _bump(subscriber)
    session.flush()
    session.expire_all()
    return gone


def undo(session: Session, subscriber: Subscriber, paper_id: str) -> bool:
    """The Undo button of the page that confirmed a mark: the mark goes; again is harmless."""
    _check_subscribed(subscriber)
    return remove(session, subscriber, paper_id)


def mark_of(session: Session, subscriber: Subscriber, paper_id: str) -> Feedback | None:
    return session.get(Feedback, (subscriber.id, paper_id), populate_existing=True)


@dataclass(frozen=True)
class Mark:
    """One mark as the settings page and the export show it."""

    paper_id: str
    title: str
    liked: bool
    source: str
    created_at: datetime

    @property
    def label(self) -> str:
        return "More" if self.liked else "Less"

    @property
    def abs_url(self) -> str:
        return f"https://arxiv.org/abs/{self.paper_id}"


def marks(session: Session, subscriber: Subscriber) -> list[Mark]:
    """Every mark of the reader, newest first."""
    rows = session.execute(
        select(Feedback.paper_id, Paper.title, Feedback.liked, Feedback.source, Feedback.created_at)
        .join(Paper, Paper.id == Feedback.paper_id)
        .where(Feedback.subscriber_id == subscriber.id)
        .order_by(Feedback.created_at.desc(), Feedback.paper_id)
    )
    return [Mark(*row) for row in rows]


def save_choices(session: Session, subscriber: Subscriber, *, learn: bool, suggest: bool) -> None:
    """The settings page's two checkboxes: "Learn from my feedback", "Suggestions beyond my topics"."""
    subscriber.learn_from_feedback = bool(learn)
    subscriber.suggest_beyond_topics = bool(suggest)
    session.flush()


# ---------------------------------------------------------------- "Papers you like"

_ID = r"(?:\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?"
_BARE = re.compile(rf"^(?:arxiv:)?(?P<id>{_ID})$", re.IGNORECASE)
_ARXIV_URL = re.compile(
    rf"^(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/(?P<id>{_ID})(?:\.pdf)?/?(?:[?#].*)?$", re.IGNORECASE
)
_HF_URL = re.compile(rf"^(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/papers/(?P<id>{_ID})/?(?:[?#].*)?$",
                     re.IGNORECASE)
NOT_A_PAPER = ("not an arXiv id (2602.01234, hep-th/9901001) nor an arXiv or Hugging Face paper link "
               "(https://arxiv.org/abs/2602.01234, https://huggingface.co/papers/2602.01234)")


@dataclass(frozen=True)
class LineError:
    number: int  # 1-based, as the reader counts the lines of the box
    text: str
    message: str

    def __str__(self) -> str:
        return f"line {self.number} ({self.text!r}): {self.message}"


@dataclass
class LikedLines:
    """What the "Papers you like" box said: the arXiv id of each good line, each bad line's error."""

    ids: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, text, arXiv id)
    errors: list[LineError] = field(default_factory=list)

    @property
    def paper_ids(self) -> list[str]:
        return list(dict.fromkeys(paper_id for _, _, paper_id in self.ids))


def paper_id_of(line: str) -> str | None:
    """The arXiv id (without version) a line names: an id, or an arXiv abs/pdf or Hugging Face
    papers link; None when it names none. Old-style ids keep their archive (hep-th/9901001)."""
    text = line.strip()
    for pattern in (_BARE, _ARXIV_URL, _HF_URL):
        match = pattern.match(text)
        if match:
            found = match.group("id")
            # The archive of an old-style id is lower case (hep-th), its subject class upper (math.GT).
            archive, _, rest = found.rpartition("/")
            if archive:
                name, dot, subject = archive.partition(".")
                found = f"{name.lower()}{dot}{subject.upper()}/{rest}"
            return normalise_arxiv_id(re.sub(r"V(\d+)$", r"v\1", found))
    return None


def read_liked_lines(text: str | None) -> LikedLines:
    """Each non-blank line of the box, checked on its own (no database, no network)."""
    result = LikedLines()
    counted = 0
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        counted += 1
        shown = line if len(line) <= 80 else line[:77] + "..."
        if counted > MAX_LIKED_LINES:
            result.errors.append(LineError(number, shown, f"at most {MAX_LIKED_LINES} papers at a time: send this "
                                                          "line again once the others are saved"))
        elif len(line) > MAX_LINE_LENGTH:
            result.errors.append(LineError(number, shown, f"longer than {MAX_LINE_LENGTH} characters: {NOT_A_PAPER}"))
        elif (paper_id := paper_id_of(line)) is None:
            result.errors.append(LineError(number, shown, NOT_A_PAPER))
        else:
            result.ids.append((number, line, paper_id))
    return result


@dataclass
class Lookup:
    """Papers of the box that were not in the store, as arXiv answered them (or why it could not)."""

    records: list[PaperRecord] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    error: str | None = None


def missing_papers(session: Session, paper_ids: list[str]) -> list[str]:
    """The ids that are not in the store, in the order given."""
    if not paper_ids:
        return []
    known = set(session.scalars(select(Paper.id).where(Paper.id.in_(paper_ids))))
    return [paper_id for paper_id in paper_ids if paper_id not in known]


def fetch_by_id(settings: Settings, paper_ids: list[str], transport: httpx.BaseTransport | None = None) -> Lookup:
    """Look the papers up on the arXiv API (network only: call it outside any transaction)."""
    lookup = Lookup(asked=list(paper_ids))
    if not paper_ids:
        return lookup
    try:
        with http_client(settings, transport) as client:
            lookup.records = lookup_source(client, settings).fetch_ids(paper_ids).papers
    except SourceError as exc:
        log.warning("looking up %d liked paper(s) on arXiv failed: %s", len(paper_ids), exc)
        lookup.error = str(exc)
    return lookup


def look_up_liked(sessions: Callable[[], Session], lines: LikedLines, settings: Settings,
                  transport: httpx.BaseTransport | None = None) -> Lookup:
    """Which liked papers the store lacks (a read that takes no write lock), then those fetched
    from arXiv with no transaction open."""
    with session_scope(sessions, read_only=True) as session:
        wanted = missing_papers(session, lines.paper_ids)
    return fetch_by_id(settings, wanted, transport)


def lookup_edition(record: PaperRecord) -> date:
    """The edition of a paper looked up by id: its publication day in UTC (see the module's
    docstring), else the first day of the month its id names."""
    if record.published_at is not None:
        return record.published_at.astimezone(UTC).date()
    digits = record.id.rpartition("/")[2][:4]
    year, month = int(digits[:2]), int(digits[2:4])
    return date((1900 if year >= 91 else 2000) + year, min(max(month, 1), 12), 1)


@dataclass
class LikedOutcome:
    saved: list[str] = field(default_factory=list)  # paper ids now marked "More like this"
    errors: list[LineError] = field(default_factory=list)


UNREACHABLE = "arXiv could not be reached to look this paper up: nothing lost, send this line again later"
UNKNOWN = "arXiv has no paper with this id"


def like_papers(session: Session, subscriber: Subscriber, lines: LikedLines, lookup: Lookup | None = None, *,
                now: datetime | None = None) -> LikedOutcome:
    """Store the papers arXiv answered (through ingest, with `lookup_edition`), then mark every
    good line's paper "More like this" (source "settings"). Lines whose paper could not be found
    get their error; the others are saved. NotSubscribed for a reader who unsubscribed (nothing
    stored)."""
    now = now or datetime.now(UTC)
    outcome = LikedOutcome(errors=list(lines.errors))
    if not lines.ids:
        return outcome
    _check_subscribed(subscriber)
    lookup = lookup or Lookup()
    if lookup.records:
        store_papers(session, lookup.records, now, edition_of=lookup_edition)
        session.flush()
    present = set(session.scalars(select(Paper.id).where(Paper.id.in_(lines.paper_ids))))
    changed = False
    done: set[str] = set()
    for number, text, paper_id in lines.ids:
        if paper_id not in present:
            failed = lookup.error is not None and paper_id in lookup.asked
            outcome.errors.append(LineError(number, text, UNREACHABLE if failed else f"{UNKNOWN} ({paper_id})"))
            continue
        if paper_id not in done:
            changed |= _upsert(session, subscriber, paper_id, True, "settings", now)
            done.add(paper_id)
            outcome.saved.append(paper_id)
    if changed:
        _bump(subscriber)
    outcome.errors.sort(key=lambda error: error.number)
    session.flush()
    session.expire_all()
    return outcome


def export_marks(session: Session, subscriber: Subscriber) -> list[dict]:
    """The reader's marks as the data export shows them."""
    return [
        {"paper_id": m.paper_id, "title": m.title, "mark": "more" if m.liked else "less", "source": m.source,
         "created_at": m.created_at.isoformat()}
        for m in marks(session, subscriber)
    ]
