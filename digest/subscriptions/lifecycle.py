"""A subscriber's whole life: subscribe, confirm, change settings, drop a topic, unsubscribe,
export and delete. The web app and the CLI are thin layers over these functions.

Rules decided here (each has a test):
- Subscribing never reveals whether an address is already known: the caller gets a Subscriber,
  the web shows one answer page for every case, before any of this runs (subscribe_in_background).
- Double opt-in: a new, pending, unsubscribed or suppressed address gets a confirmation email and
  nothing else until it is confirmed.
- A request never changes an existing row: for an active address it does nothing, for a pending,
  unsubscribed or suppressed one it only sends a confirmation carrying what it asked for. Only the
  owner's click applies it (confirm), so a stranger cannot rewrite someone's topics, replace what
  they are about to confirm, or end the links they hold.
- Everything is validated before anything is written: a bad topic saves nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timezone

from sqlalchemy import delete as sql_delete
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.db import session_scope
from digest.models import Delivery, Feedback, Frequency, Subscriber, SubscriberStatus, Suppression, Topic
from digest.schedule import next_due_at
from digest.tokens import rotate_tokens
from digest.subscriptions.confirmation import (
    ConfirmationMail,
    LinkedRequest,
    build_confirmation,
    claim_slot,
    deliver_confirmation,
    read_link_request,
    release_slot,
    send_mail,
)
from digest.subscriptions.feedback import export_marks
from digest.subscriptions.validation import (
    MAX_PAPERS_LIMIT,
    WEEKDAYS,
    InvalidInput,
    SubscribeRequest,
    TopicErrors,
    check_hour,
    check_timezone,
    clean_topics,
    int_field,
    normalise_email,
    read_subscribe_request,
)

log = logging.getLogger(__name__)


def _schedule(subscriber: Subscriber, now: datetime) -> None:
    """Only active subscribers are due; the delivery schedule decides when."""
    subscriber.next_due_at = next_due_at(subscriber, now) if subscriber.status == SubscriberStatus.active else None


@dataclass
class SubscribeOutcome:
    subscriber: Subscriber
    created: bool = False
    confirmation_sent: bool = False
    confirmation_due: bool = False
    confirmation: ConfirmationMail | None = None  # its slot taken, to send after commit (deferred)
    note: str = ""


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email == normalise_email(email))).one_or_none()


def _insert_or_get(session: Session, address: str, now: datetime) -> tuple[Subscriber, bool]:
    """The address's row, inserted as a new pending subscriber when there was none. One INSERT
    ... ON CONFLICT DO NOTHING as the transaction's first statement: racing requests for a new
    address share one row without a unique-constraint error, and SQLite takes its write lock
    before anything was read, so concurrent requests wait their turn instead of failing."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
    created = session.execute(
        insert(Subscriber)
        .values(email=address, status=SubscriberStatus.pending, created_at=now)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(Subscriber.id)  # a row back: this statement made it (row counts vary by driver)
    ).first() is not None
    return session.scalars(select(Subscriber).where(Subscriber.email == address)).one(), created


def _set_topics(subscriber: Subscriber, topics: list[str]) -> None:
    existing = {t.query: t for t in subscriber.topics}
    subscriber.topics = [existing.get(q) or Topic(query=q) for q in topics]
    for position, topic in enumerate(subscriber.topics):
        topic.position = position


def _restarting(session: Session, subscriber: Subscriber) -> bool:
    """Confirming this row starts a new subscription (links from the earlier one must die)."""
    if subscriber.status == SubscriberStatus.unsubscribed:
        return True
    return subscriber.status == SubscriberStatus.active and session.get(Suppression, subscriber.email) is not None


def record_request(session: Session, request: SubscribeRequest, settings: Settings, *, confirmed: bool = False,
                   now: datetime | None = None) -> SubscribeOutcome:
    """A checked subscribe request against the store. A new address becomes a pending row with the
    request's choices; an active one changes nothing (unless an operator `confirmed` it); for any
    other the row stays as it is and a confirmation carrying the request is due: its slot is taken
    and its email built here (`outcome.confirmation`), sent by the caller."""
    now = now or datetime.now(UTC)
    subscriber, created = _insert_or_get(session, request.email, now)
    outcome = SubscribeOutcome(subscriber, created)
    restarting = not created and _restarting(session, subscriber)
    if created or confirmed:
        _apply_choices(subscriber, list(request.topics), request.timezone, request.hour)
    if confirmed:
        already = subscriber.status == SubscriberStatus.active and not restarting
        confirm(session, subscriber, operator=True, now=now)
        outcome.note = "already active: topics updated" if already else "active (confirmed by the operator)"
        return outcome
    if subscriber.status == SubscriberStatus.active and not restarting:
        outcome.note = "already active: nothing changed"
        return outcome
    session.flush()
    if claim_slot(session, subscriber.id, now):
        outcome.confirmation = build_confirmation(subscriber, request, settings)
        outcome.confirmation_due = True
        outcome.note = "confirmation to be sent"
    else:
        outcome.note = "confirmation not sent (hourly cap)"
    return outcome


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
    """subscribe(), telling what happened. The confirmation is sent here, in the caller's
    transaction (its slot given back if sending failed); with defer_confirmation it is only
    built (`outcome.confirmation`) for the caller to send after commit (deliver_confirmation)."""
    request = read_subscribe_request(email, topics, timezone, hour)
    outcome = record_request(session, request, settings, confirmed=confirmed, now=now)
    if outcome.confirmation is not None and not defer_confirmation:
        outcome.confirmation_sent = send_mail(outcome.confirmation, settings, transport)
        if not outcome.confirmation_sent:
            release_slot(session, outcome.subscriber.id)
            outcome.note = "confirmation not sent (mail failure)"
        else:
            outcome.note = "confirmation sent"
    session.flush()
    return outcome


def subscribe_in_background(sessions: Callable[[], Session], request: SubscribeRequest, settings: Settings,
                            transport=None) -> None:
    """The web's subscribe, run after the answer went out (one answer for everyone, at one speed):
    record the request, commit, then send its confirmation. Logs, never raises: nobody waits for
    it, and a failure must not take the connection down with it."""
    subscriber_id = None
    try:
        with session_scope(sessions) as session:
            outcome = record_request(session, request, settings)
            subscriber_id = outcome.subscriber.id
        if outcome.confirmation is not None:
            deliver_confirmation(lambda: session_scope(sessions), outcome.confirmation, settings, transport)
    except Exception:  # noqa: BLE001 - logged for the operator; the visitor already has their answer
        log.exception("a subscribe request (subscriber %s) failed after its answer went out", subscriber_id)


def _apply_choices(subscriber: Subscriber, topics: list[str], zone: str | None, hour: int | None) -> None:
    _set_topics(subscriber, topics)
    if zone:
        subscriber.timezone = zone
    if hour is not None:
        subscriber.delivery_hour = hour


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


ENDED = "this subscription was ended after this link was sent: subscribe again to restart it"


def confirm(session: Session, subscriber: Subscriber, *, request: LinkedRequest | None = None, operator: bool = False,
            now: datetime | None = None) -> Subscriber:
    """The owner's click (or an operator's --confirmed): pending, unsubscribed or suppressed ->
    active, with the choices of the request the link carried. Lifts a suppression (the owner just
    proved the mailbox works). Restarting an ended subscription renews the row's links. A link
    made before the row was unsubscribed (or one without a request, for an unsubscribed row)
    confirms nothing: InvalidInput."""
    now = now or datetime.now(timezone.utc)
    stale = not request.made_for(subscriber) if request is not None else subscriber.status == SubscriberStatus.unsubscribed
    if stale and not operator:
        raise InvalidInput({"status": ENDED})
    suppression = session.get(Suppression, subscriber.email)
    if subscriber.status != SubscriberStatus.active or suppression is not None:
        if request is not None:
            _apply_choices(subscriber, request.topics, request.timezone, request.hour)
        if subscriber.status == SubscriberStatus.unsubscribed or suppression is not None:
            rotate_tokens(subscriber)  # a fresh start: links from the earlier subscription stop working
        if suppression is not None:
            session.delete(suppression)
        if subscriber.status != SubscriberStatus.active:
            subscriber.status = SubscriberStatus.active
            subscriber.confirmed_at = now
            subscriber.unsubscribed_at = None
    _schedule(subscriber, now)
    session.flush()
    return subscriber


def confirm_link(session: Session, subscriber: Subscriber, payload: dict | None, *, now: datetime | None = None) -> Subscriber:
    """Confirm with what a confirmation link carries (its claims' `request`); InvalidInput when
    the link is stale or its topics are no longer accepted."""
    return confirm(session, subscriber, request=read_link_request(payload), now=now)


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
    values = check_settings(form)
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


def check_settings(form: SettingsForm) -> dict:
    """Every field of the form checked, nothing written: the values to save, or InvalidInput naming
    every bad field (a page can refuse a form before it asks anyone anything on its behalf)."""
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
    return values


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
        "learn_from_feedback": subscriber.learn_from_feedback,
        "suggest_beyond_topics": subscriber.suggest_beyond_topics,
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
        # Each "More like this" / "Less like this" the reader gave, and each paper they said they like.
        "feedback": export_marks(session, subscriber),
    }


def delete(session: Session, subscriber: Subscriber) -> None:
    """Remove the subscriber, topics, marks and suppression for good; deliveries stay as anonymous
    counts. The marks go with the row by the foreign key's cascade too; deleted here as well, so
    that a database opened without SQLite's foreign_keys pragma keeps no reader's marks either."""
    session.execute(sql_delete(Feedback).where(Feedback.subscriber_id == subscriber.id)
                    .execution_options(synchronize_session=False))
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

