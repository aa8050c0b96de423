"""Signed, purposed, expiring and revocable tokens for the links in every email.

A token is `itsdangerous`-signed with DIGEST_SECRET_KEY and salted with its purpose, so a settings
token cannot be replayed as an unsubscribe or confirm token. Its payload binds the subscriber id
and the subscriber's `token_version`: bumping the version (rotate_tokens) kills every link sent
before. Confirmation links also expire (CONFIRM_MAX_AGE); the others live as long as the version.
"""

from __future__ import annotations

from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.errors import DigestError
from digest.models import Subscriber

PURPOSES = ("confirm", "settings", "unsubscribe", "view")
CONFIRM_MAX_AGE = timedelta(days=7)
DEFAULT_MAX_AGE = {"confirm": CONFIRM_MAX_AGE}


class InvalidToken(DigestError):
    """The link is tampered, foreign (another purpose or key), revoked or for a deleted subscriber."""


class ExpiredToken(InvalidToken):
    """The link was genuine but is older than its purpose allows."""


def _serializer(purpose: str, settings: Settings) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(settings.secret_key, salt=f"digest.{purpose}")


def make_token(subscriber: Subscriber, purpose: str, settings: Settings) -> str:
    if subscriber.id is None:
        raise ValueError("a subscriber needs an id (flush it) before a link can point at it")
    return _serializer(purpose, settings).dumps([subscriber.id, subscriber.token_version or 1, purpose])


def read_token(
    session: Session, token: str, purpose: str, settings: Settings, max_age: timedelta | int | None = None
) -> Subscriber:
    """The subscriber this token was made for, or InvalidToken / ExpiredToken."""
    if max_age is None:
        max_age = DEFAULT_MAX_AGE.get(purpose)
    seconds = int(max_age.total_seconds()) if isinstance(max_age, timedelta) else max_age
    try:
        payload = _serializer(purpose, settings).loads(token, max_age=seconds)
    except SignatureExpired:
        raise ExpiredToken("this link has expired") from None
    except BadSignature:
        raise InvalidToken("this link is not valid") from None
    if not (isinstance(payload, list) and len(payload) == 3 and payload[2] == purpose):
        raise InvalidToken("this link is not valid")
    subscriber_id, version, _ = payload
    subscriber = session.get(Subscriber, subscriber_id) if isinstance(subscriber_id, int) else None
    if subscriber is None or subscriber.token_version != version:
        raise InvalidToken("this link is no longer valid")
    return subscriber


def rotate_tokens(subscriber: Subscriber) -> None:
    """Invalidate every link sent to this subscriber so far."""
    subscriber.token_version = (subscriber.token_version or 1) + 1
