"""Transports that carry finished messages: SMTP (one connection reused) or an outbox folder.

Failures are sorted the way RFC 5321 sorts them: a 4xx reply or a dropped connection is
transient (try again later), a 5xx reply about a recipient is permanent (bounce and suppress).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

from digest.config import Settings, SmtpSettings

log = logging.getLogger(__name__)


class DeliveryFailure(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientFailure(DeliveryFailure):
    """Try again later: 4xx, a dropped connection, a server that cannot be reached."""


class PermanentFailure(DeliveryFailure):
    """Do not try this address again: 5xx on the recipient."""


def message_bytes(message: EmailMessage | bytes) -> bytes:
    if isinstance(message, bytes):
        return message
    from email import policy

    return message.as_bytes(policy=policy.SMTP)  # CRLF line ends: strict servers refuse bare LF


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", value)[:120]


class OutboxTransport:
    """Writes each message as an .eml file: the default when DIGEST_SMTP_URL is unset."""

    description = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.description = f"outbox folder {self.folder}"
        self.written: list[Path] = []

    def send(self, message: EmailMessage | bytes, sender: str, recipient: str, name: str | None = None) -> Path:
        path = self.folder / f"{_safe_name(name or recipient)}.eml"
        tmp = path.with_suffix(".eml.tmp")
        tmp.write_bytes(message_bytes(message))
        tmp.replace(path)  # a reader never sees half a message
        self.written.append(path)
        return path

    def close(self) -> None:
        pass


class SmtpTransport:
    """One SMTP connection, opened lazily and reopened after a drop."""

    def __init__(self, smtp: SmtpSettings, timeout: float = 30.0) -> None:
        self.smtp = smtp
        self.timeout = timeout
        self.description = f"SMTP server {smtp.host}:{smtp.port}"
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.smtp.ssl:
                connection = smtplib.SMTP_SSL(
                    self.smtp.host, self.smtp.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                connection = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout)
                connection.ehlo()
                if self.smtp.starttls == "require" or (
                    self.smtp.starttls == "auto" and connection.has_extn("starttls")
                ):
                    connection.starttls(context=ssl.create_default_context())
                    connection.ehlo()
            if self.smtp.username:
                connection.login(self.smtp.username, self.smtp.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentFailure(f"{self.description} refused the login: {exc.smtp_code}", exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientFailure(f"cannot reach {self.description}: {exc}") from None
        return connection

    def send(self, message: EmailMessage | bytes, sender: str, recipient: str, name: str | None = None) -> None:
        if self._connection is None:
            self._connection = self._connect()
        try:
            self._connection.sendmail(sender, [recipient], message_bytes(message))
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients[recipient]
            self._fail(code, reply)
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self.close()
            self._fail(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._connection = None
            raise TransientFailure(f"{self.description} dropped the connection: {exc}") from None

    def _fail(self, code: int, reply: bytes | str) -> None:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        if 500 <= code < 600:
            raise PermanentFailure(f"{code} {text}", code)
        raise TransientFailure(f"{code} {text}", code)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._connection = None


@contextmanager
def open_transport(settings: Settings) -> Iterator[OutboxTransport | SmtpTransport]:
    transport = SmtpTransport(settings.smtp) if settings.smtp else OutboxTransport(settings.outbox_dir)
    try:
        yield transport
    finally:
        transport.close()
