"""Signed, purposed, expiring and revocable tokens for the links in every email.

A token is `itsdangerous`-signed with DIGEST_SECRET_KEY and salted with its purpose, so a settings
token cannot be replayed as an unsubscribe or confirm token. Its payload binds the subscriber id
and the subscriber's `token_version`: bumping the version (rotate_tokens) kills every link sent
before. Confirmation links also expire (CONFIRM_MAX_AGE); the others live as long as the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
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


class _KeyedSigner(TimestampSigner):
    """itsdangerous derives the purpose's key (an HMAC of key and salt) on every signature and
    every check; it depends only on the key and the purpose, so each signer derives it once per key
    (the signing key and each fallback). Same tokens, byte for byte: only the repeated work goes."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        derived = self.__dict__.setdefault("_derived", {})
        key = derived.get(secret_key)
        if key is None:
            key = derived[secret_key] = super().derive_key(secret_key)
        return key


class _PurposeSerializer(URLSafeTimedSerializer):
    """One signer per (key, purpose), reused: a digest signs three links per subscriber."""

    signer = _KeyedSigner

    def make_signer(self, salt=None):
        if salt is not None and salt != self.salt:
            return super().make_signer(salt)
        signer = self.__dict__.get("_signer")
        if signer is None:
            signer = self._signer = super().make_signer(salt)
        return signer


@lru_cache(maxsize=64)
def _purpose_serializer(secret_keys: tuple[str, ...], purpose: str) -> URLSafeTimedSerializer:
    # Oldest key first: itsdangerous signs with the last one and verifies with each, newest first.
    return _PurposeSerializer(list(secret_keys), salt=f"digest.{purpose}")


def _serializer(purpose: str, settings: Settings) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return _purpose_serializer(settings.secret_keys, purpose)


def make_token(subscriber: Subscriber, purpose: str, settings: Settings) -> str:
    if subscriber.id is None:
        raise ValueError("a subscriber needs an id (flush it) before a link can point at it")
    return _serializer(purpose, settings).dumps([subscriber.id, subscriber.token_version or 1, purpose])


@dataclass(frozen=True)
class TokenClaims:
    """What a genuine token says: which subscriber, which version of their links, what for."""

    subscriber_id: int
    version: int
    purpose: str


def verify_token(token: str, purpose: str, settings: Settings, max_age: timedelta | int | None = None) -> TokenClaims:
    """The claims of a token signed by us for this purpose, or InvalidToken / ExpiredToken.
    Needs no database: the subscriber behind it is checked by `subscriber_for`."""
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
    if not isinstance(subscriber_id, int):
        raise InvalidToken("this link is no longer valid")
    return TokenClaims(subscriber_id, version, purpose)


def subscriber_for(session: Session, claims: TokenClaims) -> Subscriber:
    """The subscriber the claims were made for, while that version of their links lives."""
    subscriber = session.get(Subscriber, claims.subscriber_id)
    if subscriber is None or subscriber.token_version != claims.version:
        raise InvalidToken("this link is no longer valid")
    return subscriber


def read_token(
    session: Session, token: str, purpose: str, settings: Settings, max_age: timedelta | int | None = None
) -> Subscriber:
    """The subscriber this token was made for, or InvalidToken / ExpiredToken."""
    return subscriber_for(session, verify_token(token, purpose, settings, max_age))


def rotate_tokens(subscriber: Subscriber) -> None:
    """Invalidate every link sent to this subscriber so far."""
    subscriber.token_version = (subscriber.token_version or 1) + 1
