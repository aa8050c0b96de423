"""The confirmation email of double opt-in: rendered by digest.mail, handed to a transport, and
capped at CONFIRMATIONS_PER_HOUR per address however often the form is posted (counted in the
database, so the cap holds across processes)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
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
    window_start = subscriber.confirmation_sent_at
    if window_start is None or now - window_start >= CONFIRMATION_WINDOW:
        subscriber.confirmation_sent_at = now
        subscriber.confirmations_sent = 1
    else:
        subscriber.confirmations_sent = (subscriber.confirmations_sent or 0) + 1
    return True



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

