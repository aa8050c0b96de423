"""A subscriber's whole life: subscribe, confirm, change settings, drop a topic, unsubscribe,
export and delete. The web app and the CLI are thin layers over these functions.

Rules decided here (each has a test):
- Email addresses are validated by email-validator (no DNS lookup) and stored lower-cased.
- A CR, LF or other control character in any field is refused before it can reach a header.
- Subscribing never reveals whether an address is already known: the caller gets a Subscriber,
  the web shows one answer page for every case.
- Double opt-in: a new, pending, unsubscribed or suppressed address gets a confirmation email and
  nothing else until it is confirmed. Within an hour at most CONFIRMATIONS_PER_HOUR are sent to
  one address, however often the form is posted.
- A subscribe request for an active address changes nothing and sends nothing, so a stranger
  cannot rewrite someone's topics or flood their inbox.
- Everything is validated before anything is written: a bad topic saves nothing.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.errors import DigestError
from digest.models import (
    Delivery,
    DeliveryStatus,
    Frequency,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from digest.matching import EditionIndex, Match, QueryError, parse_query, rank, validate_topics
from digest.message import build_message, to_bytes
from digest.render import render_email
from digest.schedule import next_due_at
from digest.tokens import rotate_tokens

log = logging.getLogger(__name__)

MAX_TOPICS = 20
MAX_TOPIC_LENGTH = 200
MAX_PAPERS_LIMIT = 50
DEFAULT_MAX_PAPERS = 10
CONFIRMATIONS_PER_HOUR = 2  # the first one and at most one more
CONFIRMATION_WINDOW = timedelta(hours=1)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidInput(DigestError):
    """One or more fields are wrong; `errors` maps each field (or topic) to its message."""

    def __init__(self, errors: dict[str, str] | list[tuple[str, str]]) -> None:
        self.errors: dict[str, str] = dict(errors)
        self.topic_errors: list[tuple[str, str]] = list(errors) if isinstance(errors, list) else []
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class TopicErrors(InvalidInput):
    """Topics the query parser refused: a list of (topic, message), in the order given."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.topic_errors = errors
        self.args = ("; ".join(f"topic {t!r}: {m}" for t, m in errors),)


# ---------------------------------------------------------------- validation of single fields


def reject_control_characters(name: str, value: str | None) -> None:
    if value and _CONTROL.search(value):
        raise InvalidInput({name: "must be one line of text without control characters"})


def normalise_email(email: str) -> str:
    """The address as stored: validated (syntax only, no DNS) and lower-cased."""
    if not isinstance(email, str) or not email.strip():
        raise InvalidInput({"email": "an email address is required"})
    reject_control_characters("email", email)
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput({"email": str(exc)}) from None
    return result.normalized.lower()


def split_topics(text: str) -> list[str]:
    """Topics from a text box: one per line; semicolons also separate, and commas outside quotes."""
    topics: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text.replace("\r\n", "\n").replace("\r", "\n"):
        if char == "\n":
            quoted = False
            topics.append("".join(current))
            current = []
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == ";" or (char == "," and not quoted):
            topics.append("".join(current))
            current = []
        else:
            current.append(char)
    topics.append("".join(current))
    return [" ".join(t.split()) for t in topics if t.strip()]


def _query_error(topic: str) -> str | None:
    """The matching parser's message for a topic it refuses (where and why), or None."""
    try:
        parse_query(topic)
    except QueryError as exc:
        return exc.message + (f" at column {exc.column}" if exc.column else "")
    return None


def clean_topics(topics: Iterable[str] | str) -> list[str]:
    """Validated, de-duplicated topics in the order given; TopicErrors names every bad one."""
    raw = split_topics(topics) if isinstance(topics, str) else list(topics)
    errors: list[tuple[str, str]] = []
    cleaned: list[str] = []
    for topic in raw:
        if not isinstance(topic, str):
            errors.append((str(topic), "must be text"))
            continue
        if _CONTROL.search(topic):
            errors.append((topic, "must be one line of text without control characters"))
            continue
        topic = " ".join(topic.split())
        if not topic:
            continue
        if len(topic) > MAX_TOPIC_LENGTH:
            errors.append((topic, f"is longer than {MAX_TOPIC_LENGTH} characters"))
            continue
        message = _query_error(topic)
        if message:
            errors.append((topic, message))
        else:
            cleaned.append(topic)
    if errors:
        raise TopicErrors(errors)
    # The parser's own tidying and de-duplication ("LLMs" and "llm" are one topic).
    cleaned = validate_topics(cleaned)
    if not cleaned:
        raise InvalidInput({"topics": "give at least one topic"})
    if len(cleaned) > MAX_TOPICS:
        raise InvalidInput({"topics": f"at most {MAX_TOPICS} topics, got {len(cleaned)}"})
    return cleaned


def check_timezone(name: str | None) -> str | None:
    if name is None or name == "":
        return None
    reject_control_characters("timezone", name)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput({"timezone": f"unknown time zone {name!r} (use a name like Europe/Berlin)"}) from None
    return name


def _int_field(name: str, value, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidInput({name: f"must be a whole number from {low} to {high}"}) from None
    if not low <= number <= high:
        raise InvalidInput({name: f"must be from {low} to {high}"})
    return number


def check_hour(value) -> int | None:
    return _int_field("hour", value, 0, 23)


# ---------------------------------------------------------------- scheduling


def _schedule(subscriber: Subscriber, now: datetime) -> None:
    """Only active subscribers are due; the delivery schedule decides when."""
    subscriber.next_due_at = next_due_at(subscriber, now) if subscriber.status == SubscriberStatus.active else None


# ---------------------------------------------------------------- confirmation email


def _confirmation_message(subscriber: Subscriber, settings: Settings) -> bytes:
    """The confirmation email in the digest's look, as sent (CRLF, DKIM-signed when configured)."""
    from digest.links import confirm_url

    rendered = render_email(
        "confirm", settings, email=subscriber.email, confirm_url=confirm_url(subscriber, settings),
        topics=[t.query for t in subscriber.topics],
    )
    # No List-Unsubscribe: the address is not on the list until it confirms.
    return to_bytes(build_message(rendered, subscriber.email, settings, list_unsubscribe=False), settings)


def _may_send_confirmation(subscriber: Subscriber, now: datetime) -> bool:
    window_start = subscriber.confirmation_sent_at
    if window_start is None or now - window_start >= CONFIRMATION_WINDOW:
        return True
    return (subscriber.confirmations_sent or 0) < CONFIRMATIONS_PER_HOUR


def send_confirmation(session: Session, subscriber: Subscriber, settings: Settings, *, now=None, transport=None) -> bool:
    """Send the confirmation email unless the hourly cap is reached; True when it was sent.

    A transport failure is logged and leaves the counters alone, so a later request may retry;
    the caller shows the same page either way (the answer must not depend on the address).
    """
    from digest.mailer import DeliveryFailure, open_transport

    now = now or datetime.now(timezone.utc)
    if not _may_send_confirmation(subscriber, now):
        log.info("confirmation for subscriber %s not sent: hourly cap reached", subscriber.id)
        return False
    session.flush()
    message = _confirmation_message(subscriber, settings)
    try:
        if transport is not None:
            transport.send(message, settings.sender, subscriber.email)
        else:
            with open_transport(settings) as opened:
                opened.send(message, settings.sender, subscriber.email)
    except DeliveryFailure as exc:
        log.warning("confirmation for subscriber %s not sent: %s", subscriber.id, exc)
        return False
    window_start = subscriber.confirmation_sent_at
    if window_start is None or now - window_start >= CONFIRMATION_WINDOW:
        subscriber.confirmation_sent_at = now
        subscriber.confirmations_sent = 1
    else:
        subscriber.confirmations_sent = (subscriber.confirmations_sent or 0) + 1
    return True


# ---------------------------------------------------------------- the life of a subscriber


@dataclass
class SubscribeOutcome:
    subscriber: Subscriber
    created: bool = False
    confirmation_sent: bool = False
    confirmation_due: bool = False
    note: str = ""


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email == normalise_email(email))).one_or_none()


def _insert_or_get(session: Session, address: str, now: datetime) -> tuple[Subscriber, bool]:
    """A new pending subscriber, or the row that a concurrent request inserted a moment ago
    (two form posts for one new address must not end in a unique-constraint error page)."""
    subscriber = Subscriber(email=address, status=SubscriberStatus.pending, created_at=now)
    try:
        with session.begin_nested():
            session.add(subscriber)
            session.flush()
    except IntegrityError:
        existing = session.scalars(select(Subscriber).where(Subscriber.email == address)).one()
        return existing, False
    return subscriber, True


def _set_topics(subscriber: Subscriber, topics: list[str]) -> None:
    existing = {t.query: t for t in subscriber.topics}
    subscriber.topics = [existing.get(q) or Topic(query=q) for q in topics]
    for position, topic in enumerate(subscriber.topics):
        topic.position = position


def subscribe_request(
    session: Session,
    email: str,
    topics: list[str] | str,
    settings: Settings,
    *,
    timezone: str | None = None,
    hour=None,
    confirmed: bool = False,
    now: datetime | None = None,
    transport=None,
    defer_confirmation: bool = False,
) -> SubscribeOutcome:
    """subscribe(), telling what happened. With defer_confirmation the email is not sent here:
    `confirmation_due` says whether the caller should run send_due_confirmation after commit."""
    now = now or datetime.now(UTC)
    address = normalise_email(email)
    cleaned = clean_topics(topics)
    zone = check_timezone(timezone)
    hour = check_hour(hour)

    subscriber = session.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
    suppressed = session.get(Suppression, address) is not None
    outcome = SubscribeOutcome(subscriber=subscriber)  # type: ignore[arg-type]
    if subscriber is not None and subscriber.status == SubscriberStatus.active and not suppressed:
        if confirmed:  # an operator may change an active subscriber's topics
            _set_topics(subscriber, cleaned)
            if zone:
                subscriber.timezone = zone
            if hour is not None:
                subscriber.delivery_hour = hour
            _schedule(subscriber, now)
            outcome.note = "already active: topics updated"
        else:
            outcome.note = "already active: nothing changed"
        session.flush()
        return outcome

    if subscriber is None:
        subscriber, outcome.created = _insert_or_get(session, address, now)
    restarting = subscriber.status == SubscriberStatus.unsubscribed or (
        subscriber.status == SubscriberStatus.active and suppressed
    )
    if restarting and not outcome.created:
        # A fresh start: links from the earlier subscription stop working.
        rotate_tokens(subscriber)
        subscriber.status = SubscriberStatus.pending
    outcome.subscriber = subscriber
    _set_topics(subscriber, cleaned)
    if zone:
        subscriber.timezone = zone
    if hour is not None:
        subscriber.delivery_hour = hour
    session.flush()

    if confirmed:
        confirm(session, subscriber, now=now)
        outcome.note = "active (confirmed by the operator)"
    else:
        _schedule(subscriber, now)
        if defer_confirmation:
            outcome.confirmation_due = _may_send_confirmation(subscriber, now)
            outcome.note = "confirmation to be sent" if outcome.confirmation_due else "confirmation not sent (hourly cap)"
        else:
            outcome.confirmation_sent = send_confirmation(session, subscriber, settings, now=now, transport=transport)
            outcome.note = "confirmation sent" if outcome.confirmation_sent else "confirmation not sent (hourly cap or mail failure)"
    session.flush()
    return outcome


def send_due_confirmation(session: Session, subscriber_id: int, settings: Settings, *, now=None, transport=None) -> bool:
    """The deferred half of a subscribe request, run after its transaction committed (the web
    sends after answering, so the answer's timing does not tell whether the address was known).
    Locks the row so two requests racing for one address still respect the hourly cap."""
    subscriber = session.scalars(
        select(Subscriber).where(Subscriber.id == subscriber_id).with_for_update()
    ).one_or_none()
    if subscriber is None or subscriber.status != SubscriberStatus.pending:
        return False
    return send_confirmation(session, subscriber, settings, now=now, transport=transport)


def subscribe(
    session: Session,
    email: str,
    topics: list[str] | str,
    settings: Settings,
    *,
    timezone: str | None = None,
    hour=None,
    confirmed: bool = False,
    now: datetime | None = None,
    transport=None,
) -> Subscriber:
    return subscribe_request(
        session, email, topics, settings, timezone=timezone, hour=hour, confirmed=confirmed, now=now, transport=transport
    ).subscriber


def confirm(session: Session, subscriber: Subscriber, *, now: datetime | None = None) -> Subscriber:
    """pending -> active; lifts a suppression (the owner just proved the mailbox works)."""
    now = now or datetime.now(timezone.utc)
    if subscriber.status == SubscriberStatus.unsubscribed:
        raise InvalidInput({"status": "this subscription was ended: subscribe again to restart it"})
    suppression = session.get(Suppression, subscriber.email)
    if suppression is not None:
        session.delete(suppression)
    if subscriber.status != SubscriberStatus.active:
        subscriber.status = SubscriberStatus.active
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
    _schedule(subscriber, now)
    session.flush()
    return subscriber


@dataclass
class SettingsForm:
    """What the settings page posts, still as text: update_settings validates every field."""

    topics: str | list[str] | None = None
    frequency: str | None = None
    weekday: str | int | None = None
    hour: str | int | None = None
    timezone: str | None = None
    max_papers: str | int | None = None
    notify_empty: bool | None = None


def update_settings(session: Session, subscriber: Subscriber, form: SettingsForm, *, now: datetime | None = None) -> Subscriber:
    """Validate every field first; on any error raise InvalidInput naming all of them, save nothing."""
    now = now or datetime.now(timezone.utc)
    errors: dict[str, str] = {}
    topic_errors: list[tuple[str, str]] = []
    values: dict = {}

    def run(name, check):
        try:
            values[name] = check()
        except TopicErrors as exc:
            topic_errors.extend(exc.topic_errors)
        except InvalidInput as exc:
            errors.update({name: msg for msg in exc.errors.values()})

    if form.topics is not None:
        run("topics", lambda: clean_topics(form.topics))
    if form.frequency is not None:
        def frequency():
            try:
                return Frequency(str(form.frequency))
            except ValueError:
                raise InvalidInput({"frequency": "must be daily or weekly"}) from None
        run("frequency", frequency)
    if form.weekday is not None:
        run("weekday", lambda: _int_field("weekday", form.weekday, 0, 6))
    if form.hour is not None:
        run("hour", lambda: check_hour(form.hour))
    if form.timezone is not None:
        run("timezone", lambda: check_timezone(form.timezone) or "UTC")
    if form.max_papers is not None:
        run("max_papers", lambda: _int_field("max_papers", form.max_papers, 1, MAX_PAPERS_LIMIT))
    if topic_errors or errors:
        failure = TopicErrors(topic_errors) if topic_errors else InvalidInput(errors)
        failure.errors.update(errors)
        raise failure

    if "topics" in values:
        _set_topics(subscriber, values["topics"])
    if values.get("frequency") is not None:
        subscriber.frequency = values["frequency"]
    if values.get("weekday") is not None:
        subscriber.weekday = values["weekday"]
    if values.get("hour") is not None:
        subscriber.delivery_hour = values["hour"]
    if values.get("timezone") is not None:
        subscriber.timezone = values["timezone"]
    if values.get("max_papers") is not None:
        subscriber.max_papers = values["max_papers"]
    if form.notify_empty is not None:
        subscriber.notify_empty = bool(form.notify_empty)
    _schedule(subscriber, now)
    session.flush()
    return subscriber


def unsubscribe(session: Session, subscriber: Subscriber, *, now: datetime | None = None) -> Subscriber:
    """Stop all mail at once. Repeating it is harmless (mail clients retry one-click POSTs)."""
    if subscriber.status != SubscriberStatus.unsubscribed:
        subscriber.status = SubscriberStatus.unsubscribed
        subscriber.unsubscribed_at = now or datetime.now(timezone.utc)
    subscriber.next_due_at = None
    session.flush()
    return subscriber


def drop_topic(session: Session, subscriber: Subscriber, query: str) -> Subscriber:
    """Remove one topic; the last one cannot be dropped (that is what unsubscribe is for)."""
    remaining = [t.query for t in subscriber.topics if t.query != query]
    if len(remaining) == len(subscriber.topics):
        raise InvalidInput({"topic": "that topic is not in this subscription"})
    if not remaining:
        raise InvalidInput({"topic": "that is the only topic: unsubscribe instead"})
    _set_topics(subscriber, remaining)
    session.flush()
    return subscriber


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export(session: Session, subscriber: Subscriber) -> dict:
    """Everything stored about this address, as JSON-ready data."""
    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber.id).order_by(Delivery.edition)
    ).all()
    suppression = session.get(Suppression, subscriber.email)
    return {
        "email": subscriber.email,
        "status": subscriber.status.value,
        "topics": [t.query for t in subscriber.topics],
        "frequency": subscriber.frequency.value,
        "weekday": WEEKDAYS[subscriber.weekday] if subscriber.frequency == Frequency.weekly else None,
        "delivery_hour": subscriber.delivery_hour,
        "timezone": subscriber.timezone,
        "max_papers": subscriber.max_papers,
        "notify_empty": subscriber.notify_empty,
        "created_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "confirmation_sent_at": _iso(subscriber.confirmation_sent_at),
        "next_due_at": _iso(subscriber.next_due_at),
        "suppressed": {"reason": suppression.reason, "since": _iso(suppression.created_at)} if suppression else None,
        "deliveries": [
            {
                "edition": d.edition.isoformat(),
                "status": d.status.value,
                "sent_at": _iso(d.sent_at),
                "paper_ids": list(d.paper_ids or []),
            }
            for d in deliveries
        ],
    }


def delete(session: Session, subscriber: Subscriber) -> None:
    """Remove the subscriber, topics and suppression for good; deliveries stay as anonymous counts."""
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id)
        .values(subscriber_id=None, message_id=None, last_error=None, paper_ids=[])
        .execution_options(synchronize_session=False)
    )
    suppression = session.get(Suppression, subscriber.email)
    if suppression is not None:
        session.delete(suppression)
    session.delete(subscriber)
    session.flush()


# ---------------------------------------------------------------- operator tools


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def import_csv(
    session: Session, source: Path | str | io.TextIOBase, settings: Settings, *, confirmed: bool = False, transport=None
) -> ImportReport:
    """Rows `email,topics[,timezone,hour]` (topics separated by semicolons, header optional).
    A bad row is reported by its line number and skipped; every good row is kept."""
    text = Path(source).read_text(encoding="utf-8-sig") if isinstance(source, (str, Path)) else source.read()
    report = ImportReport()
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if line == 1 and cells[0].lower() == "email":
            continue
        if len(cells) < 2 or len(cells) > 4:
            report.errors.append((line, "expected email, topics and optionally timezone and hour"))
            continue
        email, topics, zone, hour = (cells + ["", ""])[:4]
        savepoint = session.begin_nested()
        try:
            outcome = subscribe_request(
                session,
                email,
                [t for t in topics.split(";")] if topics else [],
                settings,
                timezone=zone or None,
                hour=hour or None,
                confirmed=confirmed,
                transport=transport,
            )
        except InvalidInput as exc:
            savepoint.rollback()
            report.errors.append((line, str(exc)))
            continue
        savepoint.commit()
        if outcome.created:
            report.added += 1
        else:
            report.unchanged += 1
    return report


def stats(session: Session) -> dict:
    by_status = dict(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    top = session.execute(
        select(Topic.query, func.count()).group_by(Topic.query).order_by(func.count().desc(), Topic.query).limit(10)
    ).all()
    deliveries = dict(session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    return {
        "subscribers": {s.value: by_status.get(s, 0) for s in SubscriberStatus},
        "topics": session.scalar(select(func.count()).select_from(Topic)) or 0,
        "distinct_topics": session.scalar(select(func.count(func.distinct(Topic.query)))) or 0,
        "top_topics": [{"topic": q, "subscribers": n} for q, n in top],
        "deliveries": {s.value: deliveries.get(s, 0) for s in DeliveryStatus},
        "suppressed": session.scalar(select(func.count()).select_from(Suppression)) or 0,
        "papers": session.scalar(select(func.count()).select_from(Paper)) or 0,
    }


# ---------------------------------------------------------------- what the pages show


@dataclass
class Preview:
    """"With these topics, the last edition would have sent you these papers"."""

    edition: date | None
    papers: list[Paper]
    total: int  # all matches; `papers` is cut at the subscriber's limit


def latest_edition(session: Session) -> date | None:
    return session.scalar(select(func.max(Paper.edition)))


def edition_sample(session: Session, limit: int = 6) -> tuple[date | None, list[Paper]]:
    """The newest edition's most upvoted papers, for the landing page."""
    edition = latest_edition(session)
    if edition is None:
        return None, []
    papers = session.scalars(
        select(Paper).where(Paper.edition == edition).order_by(Paper.upvotes.desc(), Paper.id).limit(limit)
    ).all()
    return edition, list(papers)


def preview_topics(session: Session, topics: list[str] | str, limit: int = DEFAULT_MAX_PAPERS) -> Preview:
    """The papers the newest edition would have sent for these topics (TopicErrors if one is bad)."""
    cleaned = clean_topics(topics)
    edition = latest_edition(session)
    if edition is None:
        return Preview(None, [], 0)
    papers = session.scalars(select(Paper).where(Paper.edition == edition)).all()
    ranked = _rank(list(papers), cleaned)
    return Preview(edition, ranked[:limit], len(ranked))


def edition_matches(session: Session, subscriber: Subscriber, edition: date) -> list[Match]:
    """Every paper of one edition that the subscriber's topics match, best first (no limit)."""
    papers = session.scalars(select(Paper).where(Paper.edition == edition)).all()
    topics = [t.query for t in subscriber.topics]
    return rank(EditionIndex.build(list(papers)), topics) if topics and papers else []


def _rank(papers: list[Paper], topics: list[str]) -> list[Paper]:
    return [match.paper for match in rank(EditionIndex.build(papers), topics)]
