"""A rendered email as a MIME message and as the bytes an SMTP server receives.

The stdlib's EmailMessage with the default policy costs ~2-3 ms per message (header objects, the
content manager, folding): more than the whole budget of a digest. So the message is built with a
compat32-style policy (headers stored as given), every header value is checked and encoded here,
the parts are encoded once (text quoted-printable, the ASCII HTML 7bit or else base64) and `to_bytes` writes that known
shape directly with CRLF line endings. Anything else (a message built elsewhere, a header someone
added with non-ASCII text) goes through the stdlib generator instead. The stdlib parser reads both
back in the tests.
"""

from __future__ import annotations

import binascii
import re
from datetime import date, datetime, timezone
from email import policy as email_policy
from email.contentmanager import raw_data_manager
from email.message import EmailMessage, MIMEPart
from email.policy import Compat32
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import lru_cache
from pathlib import Path

import dkim
import numpy as np

from digest.config import Settings
from digest.errors import ConfigError, DigestError
from digest.mail.rendered import RenderedEmail
from digest.mail.text import product_name, safe_url
from digest.mail.transfer_encoding import quoted_printable

# QP never writes "=_" and base64 never writes "_": this boundary cannot occur inside the parts.
BOUNDARY = "=_digest_alternative"
DKIM_HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"List-Unsubscribe", b"List-Unsubscribe-Post")
MAX_LINE = 998  # RFC 5322: octets per line, CRLF excluded
FOLD_AT = 78

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")


class HeaderError(DigestError):
    """A value cannot go into a mail header safely (line breaks, not an address...)."""


class _DigestPolicy(Compat32):
    """compat32 header handling (cheap: values stored as given, we encode them ourselves), CRLF
    line endings, and a content manager so that get_content() works as on an EmailMessage."""

    content_manager = raw_data_manager


POLICY = _DigestPolicy(linesep="\r\n")


def _check_line(name: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise HeaderError(f"{name} must be one line without control characters: {value[:60]!r}")
    return value


def _address(value: str) -> str:
    """A bare recipient address, ASCII (the domain IDNA-encoded), refused if anything looks off."""
    _check_line("To", value)
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise HeaderError(f"not an email address: {value!r}")
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise HeaderError(f"not an email address (bad domain): {value!r}") from None
    address = f"{local}@{domain}"
    if not _ADDRESS.match(address):
        raise HeaderError(f"not an email address this service can send to: {value!r}")
    return address


@lru_cache(maxsize=4096)  # subjects repeat across subscribers with the same topics
def encode_text(value: str) -> str:
    """Unstructured header text (RFC 2047): as is when ASCII, else UTF-8 base64 encoded words,
    each at most 75 characters and cut between characters, never inside one."""
    _check_line("header", value)
    if value.isascii():
        return value
    words, chunk, size = [], [], 0
    for ch in value:
        width = len(ch.encode("utf-8"))
        if size + width > 39:  # 39 bytes -> 52 base64 characters + 12 of "=?utf-8?b?...?=" = 64
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += width
    words.append("".join(chunk))
    return " ".join(
        "=?utf-8?b?" + binascii.b2a_base64(w.encode("utf-8"), newline=False).decode("ascii") + "?=" for w in words
    )


def _fold(name: str, value: str) -> str:
    """One header line, folded at spaces past 78 characters (RFC 5322 2.2.3), CRLF-terminated."""
    line = f"{name}: {value}"
    if len(line) <= FOLD_AT:
        return line + "\r\n"
    words = line.split(" ")
    lines, current = [], f"{words[0]} {words[1]}"  # never leave the name alone on its line
    for word in words[2:]:
        if len(current) + 1 + len(word) > FOLD_AT:
            lines.append(current)
            current = " " + word
        else:
            current = f"{current} {word}"
    lines.append(current)
    if any(len(part) > MAX_LINE for part in lines):
        raise HeaderError(f"{name} has a word longer than {MAX_LINE} characters")
    return "\r\n".join(lines) + "\r\n"


@lru_cache(maxsize=8)
def envelope_sender(settings: Settings) -> str:
    """The bare address of DIGEST_FROM: where bounces (DSNs) come back to."""
    return parseaddr(settings.sender)[1]


@lru_cache(maxsize=16)
def _sender_headers(settings: Settings) -> tuple[str, str]:
    """From and List-Id, checked and encoded once per settings."""
    name, address = parseaddr(settings.sender)
    sender = formataddr((name, _address(address)), charset="utf-8")
    if settings.list_id:
        list_id = settings.list_id
        if "<" not in list_id:
            list_id = f"<{list_id}>"
    else:
        list_id = f"{product_name(settings)} <digest.{settings.sender_domain}>"
    label, _, ident = list_id.rpartition("<")
    list_id = (encode_text(label.strip()) + " <" if label.strip() else "<") + _check_line("List-Id", ident)
    return sender, list_id


def make_message_id(subscriber_id: int, edition: date, settings: Settings) -> str:
    """Stable per subscriber and edition: a retried send carries the same Message-ID.
    Takes the id, or anything with an `.id` (a Subscriber)."""
    number = int(getattr(subscriber_id, "id", subscriber_id))
    return f"<digest-{edition.isoformat()}-{number}@{settings.sender_domain}>"


def _list_unsubscribe(url: str, settings: Settings) -> str:
    checked = safe_url(url)
    if checked is None or "<" in checked or ">" in checked or "," in checked:
        raise HeaderError(f"List-Unsubscribe needs an http(s) URL, got {url!r}")
    value = f"<{checked}>"
    if settings.unsubscribe_mailto:
        mailto = settings.unsubscribe_mailto.strip()
        mailto = mailto if mailto.lower().startswith("mailto:") else "mailto:" + mailto
        _check_line("List-Unsubscribe", mailto)
        if not mailto.isascii() or any(c in mailto for c in "<>, "):
            raise HeaderError(f"DIGEST_UNSUBSCRIBE_MAILTO is not a usable mailto: {mailto!r}")
        value += f", <{mailto}>"
    return value


def _crlf(text: str) -> str:
    return "\r\n".join(text.splitlines())


def _html_payload(html: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, CRLF payload). The rendered page is ASCII (render.py writes
    other characters as references), so it goes as 7bit, costing no encoding pass, when its lines
    are short enough; base64 otherwise."""
    if html.isascii():
        lines = html.splitlines()
        if max(map(len, lines), default=0) <= MAX_LINE:
            return "7bit", "\r\n".join(lines) + "\r\n"
    encoded = binascii.b2a_base64(html.encode("utf-8"), newline=False).decode("ascii")
    return "base64", "\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)])


# The ASCII characters other than "\n" at which str.splitlines also ends a line.
_OTHER_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e"


def _html_wire(html: str) -> tuple[str, bytes]:
    """`_html_payload` as bytes, for `message_bytes`. A page whose only line break is "\n" (every
    rendered digest) is checked and given its CRLFs over its bytes in C: splitting a 40 KB page
    into a string per line cost as much as the rest of the message together."""
    if html.isascii() and not any(c in html for c in _OTHER_BREAKS):
        data = html.encode("ascii")
        if _longest_line(data) <= MAX_LINE:
            wire = data.replace(b"\n", b"\r\n")
            return "7bit", wire if wire.endswith(b"\r\n") else wire + b"\r\n"
    encoding, payload = _html_payload(html)
    return encoding, payload.encode("ascii")


def _longest_line(data: bytes) -> int:
    """The length of the longest line of `data`, its lines ended by b"\n"."""
    breaks = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    if not breaks.size:
        return len(data)
    inner = int((breaks[1:] - breaks[:-1]).max()) - 1 if breaks.size > 1 else 0
    return max(int(breaks[0]), inner, len(data) - 1 - int(breaks[-1]))


def _text_payload(rendered: RenderedEmail) -> str:
    return rendered.text_qp if rendered.text_qp is not None else quoted_printable(rendered.text)


def _part(content_type: str, encoding: str, payload: str) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    for name, value in _part_headers(content_type, encoding):
        part[name] = value
    part.set_payload(payload)
    part.wire_payload = payload  # already CRLF: to_bytes writes it as is while it is still the payload
    return part


def _part_headers(content_type: str, encoding: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("Content-Type", f'{content_type}; charset="utf-8"'), ("Content-Transfer-Encoding", encoding)


def _headers(
    rendered: RenderedEmail,
    to: str,
    settings: Settings,
    message_id: str | None,
    unsubscribe_url: str | None,
    list_unsubscribe: bool,
    date: datetime | None,
) -> list[tuple[str, str]]:
    """Every header a digest carries, checked and encoded, in order."""
    sender, list_id = _sender_headers(settings)
    if message_id is None:
        message_id = make_msgid(domain=settings.sender_domain)
    elif not _MESSAGE_ID.match(message_id):
        raise HeaderError(f"not a Message-ID: {message_id!r}")
    headers = [
        ("From", sender),
        ("To", _address(to)),
        ("Subject", encode_text(_check_line("Subject", rendered.subject))),
        ("Date", format_datetime(date or datetime.now(timezone.utc))),
        ("Message-ID", message_id),
        ("List-Id", list_id),
    ]
    if list_unsubscribe and unsubscribe_url:
        headers.append(("List-Unsubscribe", _list_unsubscribe(unsubscribe_url, settings)))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.append(("Auto-Submitted", "auto-generated"))
    headers.append(("MIME-Version", "1.0"))
    headers.append(("Content-Type", f'multipart/alternative; boundary="{BOUNDARY}"'))
    return headers


def build_message(
    rendered: RenderedEmail,
    to: str,
    settings: Settings,
    *,
    message_id: str | None = None,
    unsubscribe_url: str | None = None,
    list_unsubscribe: bool = True,
    date: datetime | None = None,
) -> EmailMessage:
    """multipart/alternative (text, then HTML) with every header a digest carries. The
    List-Unsubscribe pair is added when `list_unsubscribe` and an `unsubscribe_url` is given."""
    message = EmailMessage(policy=POLICY)
    for name, value in _headers(rendered, to, settings, message_id, unsubscribe_url, list_unsubscribe, date):
        message[name] = value
    message.set_payload(
        [_part("text/plain", "quoted-printable", _text_payload(rendered)), _part("text/html", *_html_payload(rendered.html))]
    )
    return message


def message_bytes(
    rendered: RenderedEmail,
    to: str,
    settings: Settings,
    *,
    message_id: str | None = None,
    unsubscribe_url: str | None = None,
    list_unsubscribe: bool = True,
    date: datetime | None = None,
) -> bytes:
    """Exactly `to_bytes(build_message(...))`, written straight from the parts: what delivery
    sends a hundred thousand times per edition, without the message objects in between."""
    out = _header_lines(_headers(rendered, to, settings, message_id, unsubscribe_url, list_unsubscribe, date))
    out.append("\r\n")
    out.extend(_part_start("text/plain", "quoted-printable"))
    out.append(_text_payload(rendered))
    out.append("\r\n")
    html_encoding, html = _html_wire(rendered.html)
    out.extend(_part_start("text/html", html_encoding))
    data = b"".join(("".join(out).encode("ascii"), html, f"\r\n--{BOUNDARY}--\r\n".encode("ascii")))
    if settings.dkim_key_file:
        data = dkim_signature(data, settings) + data
    return data


def _part_start(content_type: str, encoding: str) -> list[str]:
    return [f"--{BOUNDARY}\r\n", *_header_lines(_part_headers(content_type, encoding)), "\r\n"]


def _header_lines(headers) -> list[str]:
    out = []
    for name, value in headers:
        if not value.isascii():
            value = encode_text(value)
        _check_line(name, value)
        out.append(_fold(name, value))
    return out


# --- bytes ------------------------------------------------------------------------------------


def _write(part, out: list[str]) -> bool:
    """The fast writer for the shape build_message makes; False if it meets anything else."""
    if not all(isinstance(value, str) for _, value in part._headers):
        return False
    out.extend(_header_lines(part._headers))
    out.append("\r\n")
    payload = part._payload
    if isinstance(payload, list):
        boundary = part.get_boundary()
        if not boundary:
            return False
        for sub in payload:
            out.append(f"--{boundary}\r\n")
            if not _write(sub, out):
                return False
            out.append("\r\n")
        out.append(f"--{boundary}--\r\n")
        return True
    if not isinstance(payload, str) or not payload.isascii():
        return False
    body = payload if payload is getattr(part, "wire_payload", None) else _crlf(payload) + "\r\n"
    out.append(body)
    return True


def _serialize(message: EmailMessage) -> bytes:
    if isinstance(message.policy, _DigestPolicy):
        out: list[str] = []
        if _write(message, out):
            data = "".join(out).encode("ascii")
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            return data
    smtp_policy = message.policy.clone(linesep="\r\n") if message.policy is not None else email_policy.SMTP
    return message.as_bytes(policy=smtp_policy)


@lru_cache(maxsize=4)
def _dkim_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"DIGEST_DKIM_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" not in key:
        raise ConfigError(f"DIGEST_DKIM_KEY_FILE: {path} is not a PEM private key")
    return key


def dkim_signature(data: bytes, settings: Settings) -> bytes:
    key = _dkim_key(Path(settings.dkim_key_file))
    try:
        return dkim.sign(
            data,
            settings.dkim_selector.encode("ascii"),
            settings.sender_domain.encode("ascii"),
            key,
            include_headers=list(DKIM_HEADERS),
        )
    except dkim.DKIMException as exc:
        raise ConfigError(f"DIGEST_DKIM_KEY_FILE: cannot sign with {settings.dkim_key_file}: {exc}") from None


def to_bytes(message: EmailMessage, settings: Settings) -> bytes:
    """The message as sent: CRLF line endings, DKIM-Signature first when a key is configured."""
    data = _serialize(message)
    if settings.dkim_key_file:
        data = dkim_signature(data, settings) + data
    return data
