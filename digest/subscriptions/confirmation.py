"""The confirmation email of double opt-in: what its link confirms, the hourly cap, sending.

- The cap (CONFIRMATIONS_PER_HOUR per address) is taken with one conditional UPDATE whose row
  count decides (`claim_slot`), so however many requests race for one address, on any store, at
  most that many emails go out; a slot whose email could not be sent is given back.
- The link carries the request it confirms (topics, time zone, hour) and the state of the row it
  was made for: a later request, a stranger's included, changes neither what an earlier link
  shows nor the row itself; only the owner's click applies a request (lifecycle.confirm).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import case, literal, or_, select, update
from sqlalchemy.orm import Session

from digest import counters
from digest.config import Settings
from digest.mail import DeliveryFailure, confirm_url, confirmation_message, envelope_sender, open_transport
from digest.models import Subscriber, SubscriberStatus
from digest.subscriptions.validation import SubscribeRequest, check_hour, check_timezone, clean_topics

log = logging.getLogger(__name__)

CONFIRMATIONS_PER_HOUR = 2  # the first one and at most one more
CONFIRMATION_WINDOW = timedelta(hours=1)


def _window_expired(now: datetime):
    return or_(Subscriber.confirmation_sent_at.is_(None), Subscriber.confirmation_sent_at <= now - CONFIRMATION_WINDOW)


def claim_slot(session: Session, subscriber_id: int, now: datetime) -> bool:
    """Take one of the hour's confirmation slots for this row; False when they are used up. One
    statement: the database decides between racing requests (PostgreSQL's row lock, SQLite's
    write lock), and SET reads the row as it was before this UPDATE, on both."""
    expired = _window_expired(now)
    taken = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, or_(expired, Subscriber.confirmations_sent < CONFIRMATIONS_PER_HOUR))
        .values(
            confirmation_sent_at=case((expired, literal(now, Subscriber.confirmation_sent_at.type)),
                                      else_=Subscriber.confirmation_sent_at),
            confirmations_sent=case((expired, 1), else_=Subscriber.confirmations_sent + 1),
        )
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    _forget_counters(session, subscriber_id)
    return taken


def release_slot(session: Session, subscriber_id: int) -> None:
    """Give back a slot whose email was not sent, so that a later request may try again."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.confirmations_sent > 0)
        .values(confirmations_sent=Subscriber.confirmations_sent - 1)
        .execution_options(synchronize_session=False)
    )
    _forget_counters(session, subscriber_id)


def _forget_counters(session: Session, subscriber_id: int) -> None:
    loaded = session.identity_map.get(session.identity_key(Subscriber, subscriber_id))
    if loaded is not None:
        session.expire(loaded, ["confirmation_sent_at", "confirmations_sent"])


# ------------------------------------------------------------------ what a link confirms


def _stamp(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1_000_000)


def link_request(subscriber: Subscriber, request: SubscribeRequest | None) -> dict:
    """The payload of a confirmation link: the request (or the row's own topics) and the row's
    unsubscribe time then, so that a link made before an unsubscribe never undoes it."""
    topics = list(request.topics) if request is not None else [t.query for t in subscriber.topics]
    return {"t": topics, "z": request.timezone if request else None, "h": request.hour if request else None,
            "u": _stamp(subscriber.unsubscribed_at)}


@dataclass(frozen=True)
class LinkedRequest:
    """What a genuine confirmation link asks for, checked again (the language may have changed)."""

    topics: list[str]
    timezone: str | None
    hour: int | None
    unsubscribed_at: int | None

    def made_for(self, subscriber: Subscriber) -> bool:
        """The row is still in the state the link was made in (not unsubscribed since)."""
        return self.unsubscribed_at == _stamp(subscriber.unsubscribed_at)


def read_link_request(payload: dict | None) -> LinkedRequest | None:
    """The request a confirmation link carries; InvalidInput if it no longer passes the checks."""
    if payload is None:
        return None
    return LinkedRequest(clean_topics(list(payload.get("t") or [])), check_timezone(payload.get("z")),
                         check_hour(payload.get("h")), payload.get("u"))


# ------------------------------------------------------------------ building and sending


@dataclass(frozen=True)
class ConfirmationMail:
    subscriber_id: int
    address: str
    message: bytes


def build_confirmation(subscriber: Subscriber, request: SubscribeRequest | None, settings: Settings) -> ConfirmationMail:
    payload = link_request(subscriber, request)
    url = confirm_url(subscriber, settings, request=payload)
    message = confirmation_message(settings, subscriber.email, url, payload["t"])
    return ConfirmationMail(subscriber.id, subscriber.email, message)


def send_mail(mail: ConfirmationMail, settings: Settings, transport=None) -> bool:
    """Hand a built confirmation to the transport; False (logged) when it could not be sent."""
    try:
        if transport is not None:
            transport.send(mail.message, envelope_sender(settings), mail.address)
        else:
            with open_transport(settings) as opened:
                opened.send(mail.message, envelope_sender(settings), mail.address)
    except DeliveryFailure as exc:
        log.warning("confirmation for subscriber %s not sent: %s", mail.subscriber_id, exc)
        return False
    counters.confirmation_sent()
    return True


def send_confirmation(session: Session, subscriber: Subscriber, settings: Settings, *, now=None, transport=None,
                      request: SubscribeRequest | None = None) -> bool:
    """In the caller's transaction: take a slot, send, give the slot back if sending failed.
    True when the email went out (the caller answers the same either way)."""
    now = now or datetime.now(timezone.utc)
    session.flush()
    if not claim_slot(session, subscriber.id, now):
        log.info("confirmation for subscriber %s not sent: hourly cap reached", subscriber.id)
        return False
    if send_mail(build_confirmation(subscriber, request, settings), settings, transport):
        return True
    release_slot(session, subscriber.id)
    return False


def deliver_confirmation(unit_of_work: Callable[[], AbstractContextManager[Session]], mail: ConfirmationMail,
                         settings: Settings, transport=None) -> bool:
    """Send a confirmation whose slot was taken in a committed transaction; give the slot back
    (in a unit of work of its own) when it could not be sent."""
    if send_mail(mail, settings, transport):
        return True
    with unit_of_work() as session:
        release_slot(session, mail.subscriber_id)
    return False


def topics_to_confirm(subscriber: Subscriber, payload: dict | None) -> list[str]:
    """What a confirmation link's page shows: the topics its request asked for (the row's own
    for a link without one)."""
    if payload is not None and isinstance(payload.get("t"), list):
        return [str(topic) for topic in payload["t"]]
    return [t.query for t in subscriber.topics]


def send_due_confirmation(session: Session, subscriber_id: int, settings: Settings, *, now=None, transport=None) -> bool:
    """A confirmation for a row still pending, with its own topics (the cap applies). The slot is
    taken and committed first, and only then does the email go out: no transaction waits on the
    mail server (on SQLite it would hold the write lock for every other writer). A failed send
    gives the slot back, so a later request may try again."""
    now = now or datetime.now(timezone.utc)
    subscriber = session.scalars(select(Subscriber).where(Subscriber.id == subscriber_id)).one_or_none()
    if subscriber is None or subscriber.status != SubscriberStatus.pending:
        return False
    if not claim_slot(session, subscriber.id, now):
        log.info("confirmation for subscriber %s not sent: hourly cap reached", subscriber.id)
        return False
    mail = build_confirmation(subscriber, None, settings)
    session.commit()
    if send_mail(mail, settings, transport):
        return True
    release_slot(session, subscriber_id)
    session.commit()
    return False
