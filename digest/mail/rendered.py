"""What rendering hands to the message writer: one email as subject, HTML and text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# (paper id, "more" or "less") -> that card's signed feedback URL for the reader of this digest,
# e.g. `lambda paper_id, action: digest.mail.feedback_url(recipient, paper_id, action, settings)`.
FeedbackLinks = Callable[[str, str], str]


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
    # Makes every card's "More like this" and "Less like this" links; None: cards without them
    # (a digest rendered for no one in particular). Called twice per card, per reader.
    feedback: FeedbackLinks | None = field(default=None, compare=False)
