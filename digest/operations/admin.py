"""The admin console's sign-in and its actions, each written to the audit log.

Sign-in: one operator account from DIGEST_ADMIN_USER and DIGEST_ADMIN_PASSWORD (the console does
not exist without both), compared in constant time; the session is a cookie signed with
DIGEST_SECRET_KEY (itsdangerous), carrying the user, a fingerprint of the password (changing
either signs everyone out) and its time of issue (it expires after DIGEST_ADMIN_SESSION_HOURS).

Actions change one thing and add one audit entry in the same transaction. An entry's target names
a row (`subscriber:12`) or a keyed hash of an address (`address:3f2a...`), never the address, so
that deleting a subscriber leaves nothing of the address in the store. Delete is the reader's own
erasure (digest.subscriptions.delete).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timezone

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest import subscriptions as subs
from digest.config import Settings
from digest.models import AuditEntry, Delivery, DeliveryStatus, Subscriber, SubscriberStatus, Suppression

log = logging.getLogger(__name__)

COOKIE = "digest_admin"
RETRYABLE = (DeliveryStatus.failed, DeliveryStatus.pending)


class ActionRefused(Exception):
    """An action that does not apply (deleted row, wrong state): nothing changed; the message says why."""


# ---------------------------------------------------------------- signing in


def _fingerprint(settings: Settings) -> str:
    secret = settings.secret_key.encode()
    return hmac.new(secret, f"{settings.admin_user}\0{settings.admin_password}".encode(), hashlib.sha256).hexdigest()[:24]


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="digest.admin.session")


def credentials_match(settings: Settings, user: str, password: str) -> bool:
    """Both compared in full, in constant time, whichever is wrong."""
    if not settings.admin_enabled:
        return False
    user_ok = hmac.compare_digest(user.encode(), settings.admin_user.encode())
    password_ok = hmac.compare_digest(password.encode(), settings.admin_password.encode())
    return user_ok and password_ok


def session_cookie(settings: Settings) -> str:
    return _serializer(settings).dumps({"u": settings.admin_user, "f": _fingerprint(settings)})


def signed_in_user(settings: Settings, cookie: str | None) -> str | None:
    """The operator a session cookie was issued to; None when absent, tampered, expired or stale."""
    if not settings.admin_enabled or not cookie:
        return None
    try:
        data = _serializer(settings).loads(cookie, max_age=int(settings.admin_session_hours * 3600))
    except BadSignature:
        return None
    if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("f", "")), _fingerprint(settings)):
        return None
    return settings.admin_user if data.get("u") == settings.admin_user else None


def session_seconds(settings: Settings) -> int:
    return int(settings.admin_session_hours * 3600)


# ---------------------------------------------------------------- the audit log


def address_ref(settings: Settings, email: str) -> str:
    """A stable, keyed name for an address, to audit it without storing it."""
    digest = hmac.new(settings.secret_key.encode(), email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"address:{digest[:16]}"


def audit(session: Session, actor: str, action: str, target: str = "", detail: str = "", now: datetime | None = None) -> None:
    session.add(AuditEntry(at=now or datetime.now(timezone.utc), actor=actor, action=action, target=target,
                           detail=detail[:1000]))
    log.info("admin %s: %s %s %s", actor, action, target, detail)


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise ActionRefused("there is no such subscriber (deleted?)")
    return subscriber


# ---------------------------------------------------------------- actions


def resend_confirmation(session: Session, settings: Settings, actor: str, subscriber_id: int, *, transport=None) -> str:
    subscriber = _subscriber(session, subscriber_id)
    if subscriber.status != SubscriberStatus.pending:
        raise ActionRefused("only a pending subscriber is sent a confirmation")
    sent = subs.send_confirmation(session, subscriber, settings, transport=transport)
    audit(session, actor, "resend confirmation", f"subscriber:{subscriber.id}", "sent" if sent else "not sent: hourly cap or mail failure")
    return "Confirmation sent." if sent else "Not sent: the hourly cap for this address is reached, or the mail server refused."


def suppress(session: Session, actor: str, subscriber_id: int) -> str:
    subscriber = _subscriber(session, subscriber_id)
    if session.get(Suppression, subscriber.email) is not None:
        raise ActionRefused("this address is already suppressed")
    session.add(Suppression(email=subscriber.email, reason=f"suppressed in the admin console by {actor}"))
    audit(session, actor, "suppress", f"subscriber:{subscriber.id}")
    return "Suppressed: no digest goes to this address until it is unsuppressed or confirmed again."


def remove_suppression(session: Session, settings: Settings, actor: str, email: str) -> str:
    address = email.strip().lower()
    suppression = session.get(Suppression, address)
    if suppression is None:
        raise ActionRefused("this address is not suppressed")
    owner = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
    session.delete(suppression)
    audit(session, actor, "remove suppression", f"subscriber:{owner}" if owner else address_ref(settings, address),
          f"was: {suppression.reason.split(':')[0]}")
    return "Suppression removed: the address is mailed again."


def delete_subscriber(session: Session, actor: str, subscriber_id: int) -> str:
    subscriber = _subscriber(session, subscriber_id)
    subs.delete(session, subscriber)
    audit(session, actor, "delete subscriber", f"subscriber:{subscriber_id}")
    return "Deleted: the address, its topics and its suppression are gone; its deliveries stay as anonymous counts."


def retry_delivery(session: Session, actor: str, delivery_id: int, now: datetime | None = None) -> str:
    """A failed or waiting delivery becomes due at once: the next dispatch (or `digest send`) takes it."""
    now = now or datetime.now(timezone.utc)
    changed = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(RETRYABLE), Delivery.subscriber_id.is_not(None))
        .values(status=DeliveryStatus.pending, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise ActionRefused("this delivery is not failed or waiting (sent meanwhile, or its subscriber deleted)")
    audit(session, actor, "retry delivery", f"delivery:{delivery_id}", now=now)
    return "Queued: it goes out with the next dispatch (within 5 minutes) or the next `digest send`."


def signed_in(session: Session, actor: str) -> None:
    audit(session, actor, "sign in")


def signed_out(session: Session, actor: str) -> None:
    audit(session, actor, "sign out")
