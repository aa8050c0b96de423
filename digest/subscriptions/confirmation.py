"""The confirmation email of double opt-in: rendered by digest.mail, handed to a transport, and
capped at CONFIRMATIONS_PER_HOUR per address however often the form is posted (counted in the
database, so the cap holds across processes)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest import counters
from digest.config import Settings
from digest.mail import DeliveryFailure, confirm_url, confirmation_message, envelope_sender, open_transport
from digest.models import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

CONFIRMATIONS_PER_HOUR = 2  # the first one and at most one more
CONFIRMATION_WINDOW = timedelta(hours=1)


def may_send_confirmation(subscriber: Subscriber, now: datetime) -> bool:
    window_start = subscriber.confirmation_sent_at
    if window_start is None or now - window_start >= CONFIRMATION_WINDOW:
        return True
    return (subscriber.confirmations_sent or 0) < CONFIRMATIONS_PER_HOUR


def send_confirmation(session: Session, subscriber: Subscriber, settings: Settings, *, now=None, transport=None) -> bool:
    """Send the confirmation email unless the hourly cap is reached; True when it was sent.

    A transport failure is logged and leaves the counters alone, so a later request may retry;
    the caller shows the same page either way (the answer must not depend on the address).
    """
    now = now or datetime.now(timezone.utc)
    if not may_send_confirmation(subscriber, now):
        log.info("confirmation for subscriber %s not sent: hourly cap reached", subscriber.id)
        return False
    session.flush()
    message = confirmation_message(
        settings, subscriber.email, confirm_url(subscriber, settings), [t.query for t in subscriber.topics]
    )
    try:
        if transport is not None:
            transport.send(message, envelope_sender(settings), subscriber.email)
        else:
            with open_transport(settings) as opened:
                opened.send(message, envelope_sender(settings), subscriber.email)
    except DeliveryFailure as exc:
        log.warning("confirmation for subscriber %s not sent: %s", subscriber.id, exc)
        return False
    counters.confirmation_sent()
    _count_confirmation(subscriber, now)
    return True


def send_due_confirmation(session: Session, subscriber_id: int, settings: Settings, *, now=None, transport=None) -> bool:
    """The deferred half of a subscribe request, run after its transaction committed (the web
    sends after answering, so the answer's timing does not tell whether the address was known).

    The slot under the hourly cap is reserved and committed first (the row locked meanwhile, so
    two requests racing for one address still respect the cap), and only then does the email go
    out: no transaction waits on the mail server (on SQLite it would hold the write lock for
    every other writer). A failed send gives the slot back, so a later request may try again."""
    now = now or datetime.now(timezone.utc)
    if not session.in_transaction():
        session.begin()  # a unit that writes: on SQLite it takes the write lock before it reads
    subscriber = session.scalars(
        select(Subscriber).where(Subscriber.id == subscriber_id).with_for_update()
    ).one_or_none()
    if subscriber is None or subscriber.status != SubscriberStatus.pending:
        return False
    if not may_send_confirmation(subscriber, now):
        log.info("confirmation for subscriber %s not sent: hourly cap reached", subscriber.id)
        return False
    message = confirmation_message(
        settings, subscriber.email, confirm_url(subscriber, settings), [t.query for t in subscriber.topics]
    )
    address, opened_window = subscriber.email, _count_confirmation(subscriber, now)
    session.commit()
    try:
        if transport is not None:
            transport.send(message, envelope_sender(settings), address)
        else:
            with open_transport(settings) as opened:
                opened.send(message, envelope_sender(settings), address)
    except DeliveryFailure as exc:
        log.warning("confirmation for subscriber %s not sent: %s", subscriber_id, exc)
        _give_back(session, subscriber_id, opened_window)
        return False
    counters.confirmation_sent()
    return True


def _count_confirmation(subscriber: Subscriber, now: datetime) -> bool:
    """Count one confirmation under the hourly cap; True when it opened a new window."""
    window_start = subscriber.confirmation_sent_at
    if window_start is None or now - window_start >= CONFIRMATION_WINDOW:
        subscriber.confirmation_sent_at = now
        subscriber.confirmations_sent = 1
        return True
    subscriber.confirmations_sent = (subscriber.confirmations_sent or 0) + 1
    return False


def _give_back(session: Session, subscriber_id: int, opened_window: bool) -> None:
    values = {"confirmations_sent": Subscriber.confirmations_sent - 1}
    if opened_window:
        values["confirmation_sent_at"] = None
    session.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(**values)
                    .execution_options(synchronize_session=False))
    session.commit()
