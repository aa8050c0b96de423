"""Signed, purposed, expiring and revocable tokens for the links in every email.

A token is `itsdangerous`-signed with DIGEST_SECRET_KEY (older keys in DIGEST_SECRET_KEY_FALLBACKS
still verify) and salted with its purpose, so a settings token cannot be replayed as an
unsubscribe or confirm token. Its payload binds the subscriber id and the row's `link_secret`
(random per row): a link works only for the row it was made for, never for a later row that got
the same id, and rotate_tokens (a new secret) kills every link sent before. Confirmation links
also expire (CONFIRM_MAX_AGE); the others live as long as the secret.

Links made before revision 0002 carried the row's token_version instead of a secret. Of those,
unsubscribe links keep working for the row that existed then (`legacy_token_version`), because
every email ever sent must stay unsubscribable; the others answer as invalid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import HMACAlgorithm
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.errors import DigestError
from digest.models import Subscriber, new_link_secret

PURPOSES = ("confirm", "settings", "unsubscribe", "view")
CONFIRM_MAX_AGE = timedelta(days=7)
DEFAULT_MAX_AGE = {"confirm": CONFIRM_MAX_AGE}
COMPRESS_ABOVE = 120  # bytes of JSON payload
LEGACY_PURPOSES = frozenset({"unsubscribe"})  # links from before 0002 that still work (see above)


class InvalidToken(DigestError):
    """The link is tampered, foreign (another purpose or key), revoked or for a deleted subscriber."""


class ExpiredToken(InvalidToken):
    """The link was genuine but is older than its purpose allows."""


class _OneShotHMAC(HMACAlgorithm):
    """The same HMAC in one C call (hmac.digest) instead of an hmac object per signature."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, "sha1")


class _KeyedSigner(TimestampSigner):
    """itsdangerous derives the purpose's key (an HMAC of key and salt) on every signature and
    every check; it depends only on the key and the purpose, so each signer derives it once per key
    (the signing key and each fallback). Same tokens, byte for byte: only the repeated work goes."""

    default_digest_method = staticmethod(hashlib.sha1)  # what _OneShotHMAC computes

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("algorithm", _OneShotHMAC())
        super().__init__(*args, **kwargs)

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        derived = self.__dict__.setdefault("_derived", {})
        key = derived.get(secret_key)
        if key is None:
            key = derived[secret_key] = super().derive_key(secret_key)
        return key


class _PurposeSerializer(URLSafeTimedSerializer):
    """One signer per (key, purpose), reused: a digest signs three links per subscriber. A short
    payload is not offered to zlib (itsdangerous tries on every token; an id and a random secret
    never shrink): a confirmation link's request still is."""

    signer = _KeyedSigner

    def dump_payload(self, obj) -> bytes:
        payload = self.serializer.dumps(obj, **self.serializer_kwargs).encode()
        if len(payload) > COMPRESS_ABOVE:
            return super().dump_payload(obj)
        return base64_encode(payload)

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


def make_token(subscriber: Subscriber, purpose: str, settings: Settings, request: dict | None = None) -> str:
    """A link's token for this row (anything with `id` and `link_secret`). A confirmation link may
    carry the subscribe request it confirms (`request`: topics, time zone, hour), so that what the
    owner confirms is what they asked for, whoever asks later."""
    if subscriber.id is None or not subscriber.link_secret:
        raise ValueError("a subscriber needs an id and a link secret (flush it) before a link can point at it")
    payload = [subscriber.id, subscriber.link_secret, purpose]
    if request is not None:
        payload.append(request)
    return _serializer(purpose, settings).dumps(payload)


@dataclass(frozen=True)
class TokenClaims:
    """What a genuine token says: which row (by id and link secret), what for, since when, and
    for a confirmation link the request it confirms. `legacy_version`: an unsubscribe link made
    before links carried the secret (see subscriber_for)."""

    subscriber_id: int
    secret: str | None
    purpose: str
    issued_at: datetime
    request: dict | None = None
    legacy_version: int | None = None


def verify_token(token: str, purpose: str, settings: Settings, max_age: timedelta | int | None = None) -> TokenClaims:
    """The claims of a token signed by us for this purpose, or InvalidToken / ExpiredToken.
    Needs no database: the subscriber behind it is checked by `subscriber_for`."""
    if max_age is None:
        max_age = DEFAULT_MAX_AGE.get(purpose)
    seconds = int(max_age.total_seconds()) if isinstance(max_age, timedelta) else max_age
    try:
        payload, issued_at = _serializer(purpose, settings).loads(token, max_age=seconds, return_timestamp=True)
    except SignatureExpired:
        raise ExpiredToken("this link has expired") from None
    except BadSignature:
        raise InvalidToken("this link is not valid") from None
    if not (isinstance(payload, list) and len(payload) in (3, 4) and payload[2] == purpose
            and isinstance(payload[0], int)):
        raise InvalidToken("this link is not valid")
    subscriber_id, secret = payload[0], payload[1]
    if isinstance(secret, str):
        request = payload[3] if len(payload) == 4 and isinstance(payload[3], dict) else None
        return TokenClaims(subscriber_id, secret, purpose, issued_at, request)
    if isinstance(secret, int) and purpose in LEGACY_PURPOSES:
        return TokenClaims(subscriber_id, None, purpose, issued_at, legacy_version=secret)
    raise InvalidToken("this link is no longer valid")


def subscriber_for(session: Session, claims: TokenClaims) -> Subscriber:
    """The row the claims were made for: same id and same link secret. A row that was deleted,
    replaced by a newer one under the same id, or whose links were renewed has another secret
    (or none), so its old links never reach whoever holds the id now."""
    subscriber = session.get(Subscriber, claims.subscriber_id)
    if subscriber is None:
        raise InvalidToken("this link is no longer valid")
    if claims.secret is not None:
        genuine = hmac.compare_digest(claims.secret.encode(), (subscriber.link_secret or "").encode())
    else:
        genuine = subscriber.legacy_token_version is not None and subscriber.legacy_token_version == claims.legacy_version
    if not genuine:
        raise InvalidToken("this link is no longer valid")
    return subscriber


def read_token(
    session: Session, token: str, purpose: str, settings: Settings, max_age: timedelta | int | None = None
) -> Subscriber:
    """The subscriber this token was made for, or InvalidToken / ExpiredToken."""
    return subscriber_for(session, verify_token(token, purpose, settings, max_age))


# --------------------------------------------------------------------------- feedback links
# Every card of every digest carries two of these ("More like this", "Less like this"): twenty per
# email. An itsdangerous token costs about 12 us to sign; this one is a single HMAC-SHA256 call
# (about 1 us) over the same things a token binds (purpose, row id, row secret) plus the paper
# and the action, keyed BLAKE2b (a MAC by design, and the fastest in hashlib: about 0.5 us). Keys are
# derived per purpose, so no other kind of link verifies as one of these.

FEEDBACK_ACTIONS = ("more", "less")
_FEEDBACK_SIGNATURE_BYTES = 16


@dataclass(frozen=True)
class FeedbackClaims:
    """What a genuine feedback link says: whose row, which paper, which button."""

    subscriber_id: int
    paper_id: str
    action: str  # "more" or "less"


@lru_cache(maxsize=16)
def _feedback_keys(secret_keys: tuple[str, ...]) -> tuple[bytes, ...]:
    """Newest key first: it signs; every key verifies (rotation)."""
    return tuple(hmac.digest(key.encode(), b"digest.feedback", "sha256")[:32] for key in reversed(secret_keys))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _feedback_signature(key: bytes, subscriber_id: int, secret: str, paper_id: str, action: str) -> bytes:
    message = f"{subscriber_id}\x00{secret}\x00{paper_id}\x00{action}".encode()
    return hashlib.blake2b(message, key=key, digest_size=_FEEDBACK_SIGNATURE_BYTES).digest()


_paper_ids_b64: dict[str, str] = {}  # the same papers recur in every reader's email of an edition
_PAPER_IDS_KEPT = 50_000


def feedback_signer(subscriber: Subscriber, settings: Settings) -> Callable[[str, str], str]:
    """(paper id, action) -> the token of that feedback link, for this row (anything with `id`
    and `link_secret`): `<id>.<action>.<paper id, base64url>.<signature>`. Twenty per email:
    what all of a reader's links share (the key, the prefix) is worked out once per reader, each
    paper id's base64 once per process; per link only its signature (one keyed BLAKE2b) remains."""
    if subscriber.id is None or not subscriber.link_secret:
        raise ValueError("a subscriber needs an id and a link secret (flush it) before a link can point at it")
    key = _feedback_keys(settings.secret_keys)[0]
    subscriber_id, secret = subscriber.id, subscriber.link_secret
    prefix = f"{subscriber_id}."

    def token(paper_id: str, action: str) -> str:
        if action not in FEEDBACK_ACTIONS:
            raise ValueError(f"unknown feedback action {action!r}")
        encoded = _paper_ids_b64.get(paper_id)
        if encoded is None:
            if len(_paper_ids_b64) >= _PAPER_IDS_KEPT:
                _paper_ids_b64.clear()
            encoded = _paper_ids_b64[paper_id] = _b64(paper_id.encode())
        return f"{prefix}{action}.{encoded}.{_b64(_feedback_signature(key, subscriber_id, secret, paper_id, action))}"

    return token


def feedback_token(subscriber: Subscriber, paper_id: str, action: str, settings: Settings) -> str:
    """The token of one feedback link (a digest makes its twenty with one `feedback_signer`)."""
    return feedback_signer(subscriber, settings)(paper_id, action)


def read_feedback_token(session: Session, token: str, settings: Settings) -> tuple[Subscriber, FeedbackClaims]:
    """The subscriber and claims of a genuine feedback link, or InvalidToken: tampered, foreign,
    or for a row that was deleted or whose links were renewed."""
    parts = token.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or parts[1] not in FEEDBACK_ACTIONS or len(parts[0]) > 18:
        raise InvalidToken("this link is not valid")
    try:
        paper_id = _unb64(parts[2]).decode("utf-8")
        signature = _unb64(parts[3])
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("this link is not valid") from None
    subscriber = session.get(Subscriber, int(parts[0]))
    if subscriber is None or not subscriber.link_secret:
        raise InvalidToken("this link is no longer valid")
    for key in _feedback_keys(settings.secret_keys):
        expected = _feedback_signature(key, subscriber.id, subscriber.link_secret, paper_id, parts[1])
        if hmac.compare_digest(expected, signature):
            return subscriber, FeedbackClaims(subscriber.id, paper_id, parts[1])
    raise InvalidToken("this link is not valid")


def rotate_tokens(subscriber: Subscriber) -> None:
    """Invalidate every link sent to this subscriber so far (those from before 0002 too)."""
    subscriber.link_secret = new_link_secret()
    subscriber.token_version = (subscriber.token_version or 1) + 1
    subscriber.legacy_token_version = None
