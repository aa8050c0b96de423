"""Asynchronous bounces: RFC 3464 delivery status notifications, made here the way relays make them."""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage

import pytest
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


@pytest.mark.integration
def test_the_bounce_mailbox_task_reads_a_real_imap_server(committed_db, settings, tmp_path):
    """pymap (an IMAP server in Python) with its demo mailbox, which already holds ordinary mail."""
    import imaplib
    import socket
    import subprocess
    import sys
    import time

    from sqlalchemy.orm import Session

    from digest.bounces import process_mailbox
    from digest.db import session_factory

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pymap.main import main; sys.argv[0] = 'pymap'; sys.exit(main())", "--host", "127.0.0.1", "--port", str(port), "--no-tls", "dict", "--demo-data"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                client = imaplib.IMAP4("127.0.0.1", port)
                break
            except OSError:
                assert server.poll() is None, "pymap did not start"
                time.sleep(0.1)
        client.login("demouser", "demopass")
        client.append("INBOX", None, None, dsn([("gone@example.org", "failed", "5.1.1")]))
        client.append("INBOX", None, None, dsn([("slow@example.org", "delayed", "4.4.1")]))
        client.select("INBOX")
        before = len(client.uid("SEARCH", None, "ALL")[1][0].split())
        client.logout()
        with Session(committed_db) as session:
            make_subscriber(session, "gone@example.org")
            session.commit()

        configured = settings.model_copy(update={"bounce_imap_url": f"imap://demouser:demopass@127.0.0.1:{port}/INBOX"})
        report = process_mailbox(session_factory(committed_db), configured)
        assert report.suppressed == ["gone@example.org"]
        assert report.messages == 2 and report.ignored >= 1
        with Session(committed_db) as session:
            assert session.get(Suppression, "gone@example.org") is not None
            assert session.get(Suppression, "slow@example.org") is None
        client = imaplib.IMAP4("127.0.0.1", port)
        client.login("demouser", "demopass")
        client.select("INBOX")
        after = client.uid("SEARCH", None, "ALL")[1][0].split()
        client.logout()
        assert len(after) == before - 2  # both reports gone; the ordinary mail is still there
        # A second pass finds nothing new.
        assert process_mailbox(session_factory(committed_db), configured).messages == 0
    finally:
        server.terminate()
        server.wait(10)
