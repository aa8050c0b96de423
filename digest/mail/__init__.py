"""Emails in one place: rendering (templates once, then string joins), the message and its
headers, the signed links every email carries, the transfer encoding, and the transports (SMTP or
an outbox folder). It knows nothing of subscriptions or delivery: they hand it plain values and
get bytes back, which they give to a transport.
"""

from digest.mail.digest_email import (
    MAX_CARDS,
    MAX_HTML_BYTES,
    EditionRenderer,
    edition_renderer,
    render_full_edition_html,
)
from digest.mail.emails import confirmation_message, render_email
from digest.mail.links import confirm_url, feedback_links, feedback_url, settings_url, unsubscribe_url, view_url
from digest.mail.message import (
    HeaderError,
    build_message,
    envelope_sender,
    make_message_id,
    message_bytes,
    to_bytes,
)
from digest.mail.preflight import check_outbox, check_sending
from digest.mail.rendered import DigestLinks, FeedbackLinks, RenderedEmail
from digest.mail.transport import (
    DeliveryFailure,
    OutboxTransport,
    Pacer,
    PermanentFailure,
    ServerUnavailable,
    SmtpTransport,
    TransientFailure,
    Transport,
    make_transport,
    open_transport,
)

__all__ = [
    "MAX_CARDS",
    "MAX_HTML_BYTES",
    "DeliveryFailure",
    "DigestLinks",
    "EditionRenderer",
    "FeedbackLinks",
    "HeaderError",
    "OutboxTransport",
    "Pacer",
    "PermanentFailure",
    "RenderedEmail",
    "ServerUnavailable",
    "SmtpTransport",
    "TransientFailure",
    "Transport",
    "build_message",
    "check_outbox",
    "check_sending",
    "confirm_url",
    "confirmation_message",
    "edition_renderer",
    "envelope_sender",
    "make_message_id",
    "make_transport",
    "message_bytes",
    "open_transport",
    "render_email",
    "render_full_edition_html",
    "feedback_links",
    "feedback_url",
    "settings_url",
    "to_bytes",
    "unsubscribe_url",
    "view_url",
]
