"""Everything a message needs that is configuration, checked once before a send claims anything.

A fault here is the operator's, not a reader's: it must stop the run with one line naming the
setting, and leave every delivery as it was (a missing DKIM key used to fail every row of an
edition, for good). What is checked: the sender and List-Id headers, the unsubscribe mailto, the
DKIM key (read, and one real signature made with it), the SMTP URL, or without one the outbox
folder (created, and a file written and removed).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from digest.config import Settings
from digest.errors import ConfigError
from digest.mail.message import HeaderError, _list_unsubscribe, _sender_headers, dkim_signature, envelope_sender
from digest.mail.transport import outbox_error

_PROBE = (
    b"From: probe@localhost\r\nTo: probe@localhost\r\nSubject: probe\r\nDate: Thu, 26 Nov 2026 07:00:00 +0000\r\n"
    b"Message-ID: <probe@localhost>\r\n\r\nprobe\r\n"
)


def check_sending(settings: Settings) -> None:
    """Raise ConfigError (one line, naming the variable) if a message cannot be made or carried."""
    _check_headers(settings)
    if settings.dkim_key_file:
        dkim_signature(_PROBE, settings)  # raises ConfigError naming DIGEST_DKIM_KEY_FILE
    if settings.smtp_url:
        settings.smtp  # noqa: B018 (parsing is the check; Settings validated it already)
    else:
        check_outbox(settings.outbox_dir)


def _check_headers(settings: Settings) -> None:
    try:
        if not envelope_sender(settings):
            raise HeaderError("has no address")
        _sender_headers(settings)
    except HeaderError as exc:
        variable = "DIGEST_LIST_ID" if "List-Id" in str(exc) else "DIGEST_FROM"
        raise ConfigError(f"{variable}: {exc}") from None
    if settings.unsubscribe_mailto:
        try:
            _list_unsubscribe(settings.base_url + "/unsubscribe/probe", settings)
        except HeaderError as exc:
            variable = "DIGEST_UNSUBSCRIBE_MAILTO" if "mailto" in str(exc).lower() else "DIGEST_BASE_URL"
            raise ConfigError(f"{variable}: {exc}") from None


def check_outbox(folder: Path) -> None:
    """The outbox folder exists (or can be made) and takes a file."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise outbox_error(folder, exc) from None
