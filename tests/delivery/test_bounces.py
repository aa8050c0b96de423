"""Asynchronous bounces: RFC 3464 delivery status notifications, made here the way relays make them."""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage

from sqlalchemy import select

from digest.bounces import apply_dsn, parse_dsn
from digest.models import Delivery, DeliveryStatus, Suppression
from tests.factories import make_subscriber


def dsn(recipients: list[tuple[str, str, str]], reporter: str = "mx.example.org") -> bytes:
    """A multipart/report as Postfix writes one: human text, delivery-status, the original headers."""
    blocks = [f"Reporting-MTA: dns; {reporter}\r\nArrival-Date: Thu, 26 Nov 2026 07:00:03 +0000\r\n"]
    for address, action, code in recipients:
        blocks.append(
            f"Final-Recipient: rfc822; {address}\r\nOriginal-Recipient: rfc822;{address}\r\nAction: {action}\r\n"
            f"Status: {code}\r\nRemote-MTA: dns; inbound.example.org\r\n"
            f"Diagnostic-Code: smtp; {code[0]}50 {code} mailbox\r\n    unavailable\r\n"
        )
    text = (
        f"From: MAILER-DAEMON@{reporter} (Mail Delivery System)\r\n"
        "To: digest@papers.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B0UND"\r\n'
        "\r\n"
        "--B0UND\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "--B0UND\r\nContent-Type: message/delivery-status\r\n\r\n"
        + "\r\n".join(blocks)
        + "\r\n--B0UND\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: digest@papers.test\r\nSubject: Your papers\r\n"
        "\r\n--B0UND--\r\n"
    )
    return text.encode()


def test_parse_reads_every_recipient_block():
    statuses = parse_dsn(dsn([("Gone@Example.org", "failed", "5.1.1"), ("slow@example.org", "delayed", "4.4.1")]))
    assert [(s.address, s.action, s.status, s.permanent) for s in statuses] == [
        ("gone@example.org", "failed", "5.1.1", True),
        ("slow@example.org", "delayed", "4.4.1", False),
    ]
    assert "mailbox unavailable" in statuses[0].diagnostic


def test_a_plain_message_is_not_a_dsn():
    message = EmailMessage()
    message["Subject"] = "Out of office"
    message.set_content("I am away until Monday.")
    assert parse_dsn(message.as_bytes()) == []


def test_a_permanent_failure_suppresses_the_address_and_bounces_its_last_digest(session):
    subscriber = make_subscriber(session, email="gone@example.org")
    older = Delivery(subscriber_id=subscriber.id, edition=date(2026, 11, 24), status=DeliveryStatus.sent)
    newest = Delivery(subscriber_id=subscriber.id, edition=date(2026, 11, 25), status=DeliveryStatus.sent)
    session.add_all([older, newest])
    session.flush()
    suppressed = apply_dsn(session, dsn([("gone@example.org", "failed", "5.1.1"), ("slow@example.org", "delayed", "4.4.1")]))
    assert suppressed == ["gone@example.org"]
    assert session.get(Suppression, "gone@example.org").reason.startswith("bounced (DSN 5.1.1)")
    assert session.get(Suppression, "slow@example.org") is None
    session.expire_all()
    assert session.get(Delivery, newest.id).status == DeliveryStatus.bounced
    assert session.get(Delivery, older.id).status == DeliveryStatus.sent
    # The same DSN read twice (a crash before the mailbox was expunged) changes nothing more.
    apply_dsn(session, dsn([("gone@example.org", "failed", "5.1.1")]))
    assert len(list(session.scalars(select(Suppression)))) == 1
