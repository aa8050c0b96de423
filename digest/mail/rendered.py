"""What rendering hands to the message writer: one email as subject, HTML and text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    # `text` as a quoted-printable body (CRLF), when the renderer already had most of it encoded
    # (a digest's cards are encoded once each); the message writer encodes `text` otherwise.
    text_qp: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class DigestLinks:
    settings_url: str
    unsubscribe_url: str
    view_url: str
    more_url: str | None
