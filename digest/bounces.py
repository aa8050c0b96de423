"""Asynchronous bounces: delivery status notifications (RFC 3464) read from a mailbox.

A relay that accepted a digest may fail to deliver it later and send a DSN back to the envelope
sender: a multipart/report; report-type=delivery-status whose message/delivery-status part holds
one block of fields per recipient. A recipient with `Action: failed` and a 5.x.x `Status` is a
permanent failure: the address is suppressed (as a 5xx at send time would), and its newest
`sent` delivery is marked bounced. `delayed` (4.x.x) notices change nothing.

DIGEST_BOUNCE_IMAP_URL: imaps://user:password@host[:port]/MAILBOX (imap:// for STARTTLS-less
local servers). Delivery reports are deleted once applied; any other message is marked \\Seen and
left for a human.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import unquote, urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.errors import ConfigError
from digest.models import Delivery, DeliveryStatus, Subscriber, Suppression

log = logging.getLogger(__name__)

STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")


@dataclass(frozen=True)
class RecipientStatus:
    address: str
    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # e.g. 5.1.1
    diagnostic: str = ""

    @property
    def permanent(self) -> bool:
        return self.action == "failed" and self.status.startswith("5.")


def _address(value: str | None) -> str:
    """`rfc822; user@example.org` -> user@example.org (lower-cased, as subscribers are stored)."""
    if not value:
        return ""
    _, _, address = value.partition(";") if ";" in value else ("", "", value)
    return address.strip().strip("<>").lower()


def parse_dsn(raw: bytes | Message) -> list[RecipientStatus]:
    """Every per-recipient block of a DSN; [] when the message is not a delivery status report."""
    message = raw if isinstance(raw, Message) else email.message_from_bytes(raw, policy=email.policy.compat32)
    found: list[RecipientStatus] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if isinstance(blocks, str):  # some parsers leave it as text: split blocks by blank lines
            blocks = [email.message_from_string(b) for b in re.split(r"\r?\n\r?\n", blocks.strip()) if b.strip()]
        # The first block describes the reporting server; the others, one recipient each.
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            address = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
            status = STATUS.match(block.get("Status", "") or "")
            if not address or not status:
                continue
            found.append(
                RecipientStatus(
                    address=address,
                    action=(block.get("Action") or "").strip().lower(),
                    status=".".join(status.groups()),
                    diagnostic=" ".join((block.get("Diagnostic-Code") or "").split())[:500],
                )
            )
    return found


@dataclass
class BounceReport:
    messages: int = 0
    suppressed: list[str] = field(default_factory=list)
    ignored: int = 0  # not a DSN, or only delays

    def as_dict(self) -> dict:
        return {"messages": self.messages, "suppressed": len(self.suppressed), "ignored": self.ignored}


def apply_dsn(session: Session, raw: bytes | Message, report: BounceReport | None = None) -> list[str]:
    """Suppress the addresses a DSN reports as permanently failed; return them."""
    suppressed: list[str] = []
    for status in parse_dsn(raw):
        if not status.permanent:
            continue
        if session.get(Suppression, status.address) is None:
            session.add(Suppression(email=status.address, reason=f"bounced (DSN {status.status}): {status.diagnostic}"[:1000]))
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == status.address))
        if subscriber_id is not None:
            newest = session.scalar(
                select(Delivery.id)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.status == DeliveryStatus.sent)
                .order_by(Delivery.edition.desc())
                .limit(1)
            )
            if newest is not None:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == newest)
                    .values(status=DeliveryStatus.bounced, last_error=f"DSN {status.status}: {status.diagnostic}"[:1000])
                )
        suppressed.append(status.address)
    session.flush()
    if report is not None:
        report.messages += 1
        report.suppressed.extend(suppressed)
        if not suppressed:
            report.ignored += 1
    return suppressed


def open_mailbox(url: str) -> tuple[imaplib.IMAP4, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname:
        raise ConfigError("DIGEST_BOUNCE_IMAP_URL: must be imaps://user:password@host/MAILBOX")
    if parts.scheme == "imaps":
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(parts.hostname, parts.port or 993)
    else:
        client = imaplib.IMAP4(parts.hostname, parts.port or 143)
        if "STARTTLS" in client.capabilities:
            client.starttls()
    if parts.username:
        client.login(unquote(parts.username), unquote(parts.password or ""))
    return client, unquote(parts.path.lstrip("/")) or "INBOX"


def process_mailbox(
    factory: Callable[[], Session], settings: Settings, connect: Callable[[str], tuple[imaplib.IMAP4, str]] = open_mailbox
) -> BounceReport:
    """Read every message of the bounce mailbox, apply the DSNs among them, delete what was read.
    Each message is deleted only after its suppressions were committed: a crash re-reads, never loses."""
    report = BounceReport()
    client, mailbox = connect(settings.bounce_imap_url or "")
    try:
        client.select(mailbox)
        _, data = client.uid("SEARCH", None, "UNSEEN")
        for uid in (data[0] or b"").split():
            _, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((item[1] for item in fetched if isinstance(item, tuple)), None)
            if raw is None:
                continue
            if not parse_dsn(raw):
                # Not a delivery report (an auto-reply, a person): leave it for a human, read once.
                report.ignored += 1
                client.uid("STORE", uid, "+FLAGS", r"(\Seen)")
                continue
            with factory() as session, session.begin():
                apply_dsn(session, raw, report)
            client.uid("STORE", uid, "+FLAGS", r"(\Seen \Deleted)")
        client.expunge()
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    log.info("bounces: %d messages, %d addresses suppressed", report.messages, len(report.suppressed))
    return report
