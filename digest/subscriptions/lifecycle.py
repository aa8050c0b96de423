"""A subscriber's whole life: subscribe, confirm, change settings, drop a topic, unsubscribe,
export and delete. The web app and the CLI are thin layers over these functions.

Rules decided here (each has a test):
- Subscribing never reveals whether an address is already known: the caller gets a Subscriber,
  the web shows one answer page for every case.
- Double opt-in: a new, pending, unsubscribed or suppressed address gets a confirmation email and
  nothing else until it is confirmed.
- A subscribe request for an active address changes nothing and sends nothing, so a stranger
  cannot rewrite someone's topics or flood their inbox.
- Everything is validated before anything is written: a bad topic saves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.models import Delivery, Frequency, Subscriber, SubscriberStatus, Suppression, Topic
from digest.schedule import next_due_at
from digest.tokens import rotate_tokens
from digest.subscriptions.confirmation import may_send_confirmation, send_confirmation
from digest.subscriptions.validation import (
    MAX_PAPERS_LIMIT,
    WEEKDAYS,
    InvalidInput,
    TopicErrors,
    check_hour,
    check_timezone,
    clean_topics,
    int_field,
    normalise_email,
)


def _schedule(subscriber: Subscriber, now: datetime) -> None:
    """Only active subscribers are due; the delivery schedule decides when."""
    subscriber.next_due_at = next_due_at(subscriber, now) if subscriber.status == SubscriberStatus.active else None



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
            _apply_choices(subscriber, cleaned, zone, hour)
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
    _apply_choices(subscriber, cleaned, zone, hour)
    session.flush()
    if confirmed:
        confirm(session, subscriber, now=now)
        outcome.note = "active (confirmed by the operator)"
    else:
        _schedule(subscriber, now)
        _ask_for_confirmation(session, outcome, settings, now, transport, defer_confirmation)
    session.flush()
    return outcome


def _apply_choices(subscriber: Subscriber, topics: list[str], zone: str | None, hour: int | None) -> None:
    _set_topics(subscriber, topics)
    if zone:
        subscriber.timezone = zone
    if hour is not None:
        subscriber.delivery_hour = hour


def _ask_for_confirmation(session: Session, outcome: SubscribeOutcome, settings: Settings, now: datetime,
                          transport, defer: bool) -> None:
    subscriber = outcome.subscriber
    if defer:
        outcome.confirmation_due = may_send_confirmation(subscriber, now)
        outcome.note = "confirmation to be sent" if outcome.confirmation_due else "confirmation not sent (hourly cap)"
    else:
        outcome.confirmation_sent = send_confirmation(session, subscriber, settings, now=now, transport=transport)
        outcome.note = "confirmation sent" if outcome.confirmation_sent else "confirmation not sent (hourly cap or mail failure)"



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
        run("weekday", lambda: int_field("weekday", form.weekday, 0, 6))
    if form.hour is not None:
        run("hour", lambda: check_hour(form.hour))
    if form.timezone is not None:
        run("timezone", lambda: check_timezone(form.timezone) or "UTC")
    if form.max_papers is not None:
        run("max_papers", lambda: int_field("max_papers", form.max_papers, 1, MAX_PAPERS_LIMIT))
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

