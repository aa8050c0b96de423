"""Transports that carry finished messages: SMTP (one connection reused) or an outbox folder.

Failures are sorted the way RFC 5321 sorts them: a 4xx reply or a dropped connection is
transient (try again later), a 5xx reply about a recipient is permanent (bounce and suppress).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from digest import counters
from digest.config import Settings, SmtpSettings
from digest.errors import ConfigError

log = logging.getLogger(__name__)


class DeliveryFailure(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientFailure(DeliveryFailure):
    """Try this message again later: a 4xx reply, or a connection that dropped twice in a row."""


class ServerUnavailable(TransientFailure):
    """The server cannot take any message now (unreachable, login or sender refused): no
    recipient is to blame. `unreachable`: nothing answered (refused, timed out, a 4xx greeting),
    worth trying again in a moment; otherwise (login or sender refused) a setting to fix."""

    def __init__(self, message: str, code: int | None = None, unreachable: bool = False) -> None:
        super().__init__(message, code)
        self.unreachable = unreachable


class PermanentFailure(DeliveryFailure):
    """A 5xx reply. `recipient` is True when the server refused the address itself (RCPT TO):
    only then is the address bounced and suppressed; a refused message body is not the reader's fault."""

    def __init__(self, message: str, code: int | None = None, recipient: bool = True) -> None:
        super().__init__(message, code)
        self.recipient = recipient


def wire_bytes(message: EmailMessage | bytes) -> bytes:
    """A message as it goes over the wire: CRLF line ends (strict servers refuse bare LF)."""
    if isinstance(message, bytes):
        return message
    return message.as_bytes(policy=email_policy.SMTP)


class Transport(Protocol):
    """What sending needs of a transport: one message at a time, then close."""

    description: str

    def send(self, message: EmailMessage | bytes, sender: str, recipient: str, name: str | None = None) -> Path | None: ...

    def close(self) -> None: ...


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", value)[:120]


def outbox_error(folder: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"DIGEST_OUTBOX_DIR: cannot write to {folder}: {exc.strerror or exc} (make it writable, "
                       "point DIGEST_OUTBOX_DIR elsewhere, or set DIGEST_SMTP_URL)")


class OutboxTransport:
    """Writes each message as an .eml file: the default when DIGEST_SMTP_URL is unset. A folder
    that cannot be written is the operator's to fix: ConfigError, naming DIGEST_OUTBOX_DIR."""

    description = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise outbox_error(self.folder, exc) from None
        self.description = f"outbox folder {self.folder}"
        self.written: list[Path] = []

    def send(self, message: EmailMessage | bytes, sender: str, recipient: str, name: str | None = None) -> Path:
        path = self.folder / f"{_safe_name(name or recipient)}.eml"
        tmp = path.with_suffix(".eml.tmp")
        try:
            tmp.write_bytes(wire_bytes(message))
            tmp.replace(path)  # a reader never sees half a message
        except OSError as exc:
            raise outbox_error(self.folder, exc) from None
        self.written.append(path)
        return path

    def close(self) -> None:
        pass


class Pacer:
    """At most `rate` messages per second, spaced evenly (a burst would trip the relay's own limits)."""

    def __init__(self, rate: float | None, clock=time.monotonic, sleep=time.sleep) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self._next > now:
            self.sleep(self._next - now)
            now = self._next
        self._next = max(self._next, now) + self.interval


class SmtpTransport:
    """One SMTP connection reused for many messages, opened lazily, reopened after a drop or a 421.

    A message whose connection drops (or is closed with 421) is sent again once on a fresh
    connection: the server had not accepted it (RFC 5321 4.1.1.4: no 250 after DATA, no
    delivery), unless the drop came after the 250 left the server, the one case that duplicates.
    """

    reconnects_per_message = 2

    def __init__(self, smtp: SmtpSettings, timeout: float = 30.0, rate: float | None = None) -> None:
        self.smtp = smtp
        self.timeout = timeout
        self.description = f"SMTP server {smtp.host}:{smtp.port}"
        self.pacer = Pacer(rate)
        self.connections_opened = 0
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
            raise ServerUnavailable(f"{self.description} refused the login: {exc.smtp_code}", exc.smtp_code) from None
        except ssl.SSLCertVerificationError as exc:
            raise ServerUnavailable(f"cannot reach {self.description}: {exc}") from None
        except smtplib.SMTPConnectError as exc:  # the greeting was not 220: a 4xx says "busy, later"
            raise ServerUnavailable(f"cannot reach {self.description}: {exc}", exc.smtp_code,
                                    unreachable=400 <= exc.smtp_code < 500) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise ServerUnavailable(f"cannot reach {self.description}: {exc}", unreachable=True) from None
        except smtplib.SMTPException as exc:  # (an OSError too) e.g. STARTTLS required, not offered
            raise ServerUnavailable(f"cannot reach {self.description}: {exc}") from None
        except OSError as exc:  # refused, timed out, no route, a name that does not resolve
            raise ServerUnavailable(f"cannot reach {self.description}: {exc}", unreachable=True) from None
        self.connections_opened += 1
        return connection

    def send(self, message: EmailMessage | bytes, sender: str, recipient: str, name: str | None = None) -> None:
        data = wire_bytes(message)
        self.pacer.wait()
        started, code = time.perf_counter(), None
        try:
            self._exchange(data, sender, recipient)
            code = 250
        except DeliveryFailure as exc:
            code = exc.code
            raise
        finally:
            counters.smtp_exchange(code, time.perf_counter() - started)

    def _exchange(self, data: bytes, sender: str, recipient: str) -> None:
        for attempt in range(self.reconnects_per_message + 1):
            if self._connection is None:
                self._connection = self._connect()
            try:
                if self._pipelining(sender, recipient):
                    _send_pipelined(self._connection, sender, recipient, data)
                else:
                    self._connection.sendmail(sender, [recipient], data)
                return
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients[recipient]
                if code == 421:  # smtplib already closed the socket
                    self._drop()
                    continue
                self._fail(code, reply, recipient=True)
            except smtplib.SMTPSenderRefused as exc:
                if exc.smtp_code == 421:
                    self._drop()
                    continue
                self._drop()
                raise ServerUnavailable(
                    f"{self.description} refused the sender {sender}: {exc.smtp_code} {_text(exc.smtp_error)}",
                    exc.smtp_code,
                ) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:
                    self._drop()
                    continue
                self._fail(exc.smtp_code, exc.smtp_error, recipient=False)
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                log.info("%s dropped the connection (%s); reconnecting", self.description, exc)
                self._drop()
                continue
        raise TransientFailure(f"{self.description} dropped the connection {self.reconnects_per_message + 1} times")

    def _pipelining(self, sender: str, recipient: str) -> bool:
        connection = self._connection
        return (
            connection.does_esmtp
            and "pipelining" in connection.esmtp_features
            and not any(c in "<>\r\n " for c in sender + recipient)
        )

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except OSError:
                pass
        self._connection = None

    def _fail(self, code: int, reply: bytes | str, recipient: bool) -> None:
        text = f"{code} {_text(reply)}"
        if 500 <= code < 600:
            raise PermanentFailure(text, code, recipient=recipient)
        raise TransientFailure(text, code)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._connection = None


def _send_pipelined(connection: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """smtplib's sendmail for one recipient, with MAIL, RCPT and DATA sent together (RFC 2920,
    when the server offers PIPELINING): two round trips per message instead of four, and the
    dot-stuffing done by bytes.replace instead of a regular expression over the whole message.
    Every reply is read and raises the exception sendmail would raise for it, so the callers'
    handling (421 and drops reconnect, 5xx to RCPT bounces, 5xx to the message fails) is the same."""
    connection.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
    mail = connection.getreply()
    rcpt = connection.getreply()
    data_reply = connection.getreply()
    if mail[0] != 250:
        if mail[0] == 421:
            connection.close()
        else:
            _reset(connection, data_reply)
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
    if rcpt[0] not in (250, 251):
        if rcpt[0] == 421:
            connection.close()
        else:
            _reset(connection, data_reply)
        raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
    if data_reply[0] != 354:
        if data_reply[0] == 421:
            connection.close()
        else:
            connection.rset()
        raise smtplib.SMTPDataError(*data_reply)
    # RFC 5321 4.5.2: a line that starts with "." gets another one (as smtplib does, after LF too).
    body = data.replace(b"\n.", b"\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    connection.send(body + b".\r\n")
    code, reply = connection.getreply()
    if code != 250:
        if code == 421:
            connection.close()
        else:
            connection.rset()
        raise smtplib.SMTPDataError(code, reply)


def _reset(connection: smtplib.SMTP, data_reply: tuple[int, bytes]) -> None:
    """After a refused MAIL or RCPT: a server that still said 354 to DATA (it should not, RFC 2920
    3.1) gets an empty message it will refuse for want of recipients; then RSET."""
    if data_reply[0] == 354:
        connection.send(b".\r\n")
        connection.getreply()
    connection.rset()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def make_transport(settings: Settings) -> OutboxTransport | SmtpTransport:
    if settings.smtp:
        return SmtpTransport(settings.smtp, rate=settings.smtp_rate)
    return OutboxTransport(settings.outbox_dir)


@contextmanager
def open_transport(settings: Settings) -> Iterator[OutboxTransport | SmtpTransport]:
    transport = make_transport(settings)
    try:
        yield transport
    finally:
        transport.close()
