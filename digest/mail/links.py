"""The absolute URLs that every email carries, built from DIGEST_BASE_URL and signed tokens.
They take anything with the subscriber's `id` and `link_secret` (a row, or a delivery's Recipient)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from digest.config import Settings
from digest.models import Subscriber
from digest.tokens import FEEDBACK_ACTIONS, feedback_token, make_token
# The pieces `feedback_token` is made of, for `feedback_links` (the same token, made faster).
from digest.tokens import _b64, _feedback_keys, _feedback_signature


def confirm_url(subscriber: Subscriber, settings: Settings, request: dict | None = None) -> str:
    """`request`: what the link confirms (digest.subscriptions.confirmation.link_request)."""
    return f"{settings.base_url}/confirm/{make_token(subscriber, 'confirm', settings, request)}"


def settings_url(subscriber: Subscriber, settings: Settings) -> str:
    return f"{settings.base_url}/settings/{make_token(subscriber, 'settings', settings)}"


def unsubscribe_url(subscriber: Subscriber, settings: Settings) -> str:
    """Also the List-Unsubscribe URL: a POST of List-Unsubscribe=One-Click to it unsubscribes."""
    return f"{settings.base_url}/unsubscribe/{make_token(subscriber, 'unsubscribe', settings)}"


def view_url(subscriber: Subscriber, edition: date, settings: Settings) -> str:
    return f"{settings.base_url}/digest/{edition.isoformat()}/{make_token(subscriber, 'view', settings)}"


def feedback_url(subscriber: Subscriber, paper_id: str, action: str, settings: Settings) -> str:
    """A card's "More like this" (`action` "more") or "Less like this" ("less") link. Its GET
    shows a page with one button; only that button's POST records the choice."""
    return f"{settings.base_url}/feedback/{feedback_token(subscriber, paper_id, action, settings)}"



_paper_ids_b64: dict[str, str] = {}  # the same papers recur in every reader's email of an edition
_PAPER_IDS_KEPT = 50_000


def feedback_links(subscriber: Subscriber, settings: Settings) -> Callable[[str, str], str]:
    """`DigestLinks.feedback` for one reader: (paper id, action) -> that card's link, the same URL
    as `feedback_url`, byte for byte (tests hold them equal and read them back with
    `read_feedback_token`). Twenty per email: what is the same for all of a reader's cards (the
    signing key, the reader's prefix) is worked out once per reader, each paper id's base64 once
    per process; per link only its signature (one keyed BLAKE2b) remains."""
    if subscriber.id is None or not subscriber.link_secret:
        raise ValueError("a subscriber needs an id and a link secret (flush it) before a link can point at it")
    key = _feedback_keys(settings.secret_keys)[0]
    subscriber_id, secret = subscriber.id, subscriber.link_secret
    prefix = f"{settings.base_url}/feedback/{subscriber_id}."

    def link(paper_id: str, action: str) -> str:
        if action not in FEEDBACK_ACTIONS:
            raise ValueError(f"unknown feedback action {action!r}")
        encoded = _paper_ids_b64.get(paper_id)
        if encoded is None:
            if len(_paper_ids_b64) >= _PAPER_IDS_KEPT:
                _paper_ids_b64.clear()
            encoded = _paper_ids_b64[paper_id] = _b64(paper_id.encode())
        return f"{prefix}{action}.{encoded}.{_b64(_feedback_signature(key, subscriber_id, secret, paper_id, action))}"

    return link
