"""The absolute URLs that every email carries, built from DIGEST_BASE_URL and signed tokens.
They take anything with the subscriber's `id` and `link_secret` (a row, or a delivery's Recipient)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from digest.config import Settings
from digest.models import Subscriber
from digest.tokens import feedback_signer, make_token


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
    return feedback_links(subscriber, settings)(paper_id, action)


def feedback_links(subscriber: Subscriber, settings: Settings) -> Callable[[str, str], str]:
    """`DigestLinks.feedback` for one reader: (paper id, action) -> that card's link. The signer
    is made once per reader (tokens.feedback_signer): twenty links per email."""
    token = feedback_signer(subscriber, settings)
    prefix = f"{settings.base_url}/feedback/"
    return lambda paper_id, action: prefix + token(paper_id, action)
