"""send_batch end to end in one process: real store, real matching and rendering, a real SMTP
server with faults. What a subscriber would check: one digest each, the right papers, the headers."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from digest.config import parse_smtp_url
from digest.delivery import dispatch, send_batch, send_now
from digest.mail import SmtpTransport
from digest.models import Delivery, DeliveryStatus, Frequency, Paper, Subscriber, Suppression
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.smtp_server import RcptRule, SmtpTestServer


@pytest.fixture
def server():
    with SmtpTestServer() as running:
        yield running


@pytest.fixture
def smtp_settings(settings, server):
    return settings.model_copy(update={"smtp_url": server.url, "smtp_retry_delay": 0.01, "sender": "Papers <digest@papers.test>"})


def dispatched(session_factory, settings, now=NOW) -> list[int]:
    ids: list[int] = []
    dispatch(session_factory, settings, ids.extend, now=now)
    return ids


def deliveries(session) -> dict[str, Delivery]:
    session.expire_all()
    rows = session.execute(
        select(Subscriber.email, Delivery)
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .order_by(Delivery.edition, Delivery.id)  # each subscriber's newest row is the one kept
    )
    found = {email: delivery for email, delivery in rows}
    session.commit()  # end the read: the code under test opens its own transactions on this session
    return found


def test_each_due_subscriber_gets_one_digest_with_every_header(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    due_subscriber(session, "ana@example.org", ["pretraining"])
    due_subscriber(session, "bo@example.org", ["speech OR audio", "diffusion"])
    session.commit()
    report = send_batch(session_factory, smtp_settings, dispatched(session_factory, smtp_settings), now=NOW)
    assert report.sent == 2 and report.failed == 0
    assert server.handler.recipients() == {"ana@example.org": 1, "bo@example.org": 1}
    message = server.handler.messages_for("ana@example.org")[0]
    for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
                   "List-Unsubscribe-Post", "Auto-Submitted"):
        assert message[header], header
    assert message["To"] == "ana@example.org"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "<http://digest.test/unsubscribe/" in message["List-Unsubscribe"]
    rows = deliveries(session)
    ana = rows["ana@example.org"]
    assert ana.status == DeliveryStatus.sent and ana.paper_ids and ana.sent_at
    assert message["Message-ID"] == ana.message_id and ana.message_id.endswith("@papers.test>")
    # The papers listed are the ones recorded, and they are about pretraining.
    html = message.get_body(("html",)).get_content()
    assert all(f"{paper_id}" in html for paper_id in ana.paper_ids)
    assert server.handler.connections == 1  # one connection for the batch


def test_a_second_batch_with_the_same_ids_sends_nothing(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    due_subscriber(session, "ana@example.org")
    session.commit()
    ids = dispatched(session_factory, smtp_settings)
    send_batch(session_factory, smtp_settings, ids, now=NOW)
    again = send_batch(session_factory, smtp_settings, ids, now=NOW + timedelta(minutes=1))
    assert again.sent == 0 and again.not_claimed == 1
    assert server.handler.recipients() == {"ana@example.org": 1}


def test_451_once_is_retried_in_the_same_run_and_arrives_once(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    due_subscriber(session, "grey@example.org")
    due_subscriber(session, "ana@example.org")
    session.commit()
    server.faults.rcpt.append(RcptRule("grey@example.org", "451 4.7.1 Greylisted", times=1))
    report = send_batch(session_factory, smtp_settings, dispatched(session_factory, smtp_settings), now=NOW)
    assert report.sent == 2
    assert server.handler.recipients() == {"grey@example.org": 1, "ana@example.org": 1}
    assert deliveries(session)["grey@example.org"].status == DeliveryStatus.sent


def test_4xx_three_times_waits_for_a_later_run_and_is_given_up_after_three_days(
    session, session_factory, smtp_settings, server
):
    add_sample_papers(session, EDITION)
    due_subscriber(session, "full@example.org")
    session.commit()
    server.faults.rcpt.append(RcptRule("full@example.org", "452 4.2.2 Mailbox full"))
    ids = dispatched(session_factory, smtp_settings)
    report = send_batch(session_factory, smtp_settings, ids, now=NOW)
    assert report.retrying == 1 and report.sent == 0
    row = deliveries(session)["full@example.org"]
    assert row.status == DeliveryStatus.pending and row.next_attempt_at > NOW and "452" in row.last_error
    # Three days later it still fails: given up.
    late = send_batch(session_factory, smtp_settings, ids, now=NOW + timedelta(days=3, minutes=1))
    assert late.failed == 1
    assert deliveries(session)["full@example.org"].status == DeliveryStatus.failed
    assert server.handler.recipients() == {}


def test_550_bounces_suppresses_and_is_not_tried_at_the_next_edition(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION, 0, 50)
    add_sample_papers(session, EDITION + timedelta(days=1), 50, None)
    due_subscriber(session, "gone@example.org")
    due_subscriber(session, "ana@example.org")
    session.commit()
    server.faults.rcpt.append(RcptRule("gone@example.org", "550 5.1.1 No such user"))
    report = send_batch(session_factory, smtp_settings, dispatched(session_factory, smtp_settings), now=NOW)
    assert report.bounced == 1 and report.sent == 1
    assert deliveries(session)["gone@example.org"].status == DeliveryStatus.bounced
    assert session.get(Suppression, "gone@example.org") is not None
    # Next morning: the next edition goes to ana only; gone@ is not even tried.
    tomorrow = NOW + timedelta(days=1)
    next_ids = dispatched(session_factory, smtp_settings, now=tomorrow)
    send_batch(session_factory, smtp_settings, next_ids, now=tomorrow)
    assert server.handler.recipients() == {"ana@example.org": 2}
    assert len(next_ids) == 1


def test_a_dropped_connection_mid_batch_loses_nothing(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    emails = [f"r{n}@example.org" for n in range(6)]
    for email in emails:
        due_subscriber(session, email)
    session.commit()
    server.faults.drop_on_data.add(3)
    report = send_batch(session_factory, smtp_settings, dispatched(session_factory, smtp_settings), now=NOW)
    assert report.sent == 6
    assert server.handler.recipients() == {email: 1 for email in emails}
    assert server.handler.connections == 2


def test_nothing_matched_is_skipped_unless_they_asked_to_be_told(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    due_subscriber(session, "quiet@example.org", ["zzyzx quantum basket weaving"])
    due_subscriber(session, "tell@example.org", ["zzyzx quantum basket weaving"], notify_empty=True)
    session.commit()
    report = send_batch(session_factory, smtp_settings, dispatched(session_factory, smtp_settings), now=NOW)
    assert report.skipped == 1 and report.sent == 1
    assert server.handler.recipients() == {"tell@example.org": 1}
    assert deliveries(session)["quiet@example.org"].status == DeliveryStatus.skipped


def test_never_the_same_paper_twice_and_weekly_holds_the_week(session, session_factory, smtp_settings, server):
    # The same paper text in two editions is impossible (one id, one edition); the windows make
    # sure consecutive digests never overlap and a weekly one covers every edition of its week.
    for day in range(7):
        add_sample_papers(session, EDITION - timedelta(days=6 - day), day * 14, day * 14 + 14)
    daily = due_subscriber(session, "daily@example.org", ["model"], max_papers=50)
    weekly = due_subscriber(session, "weekly@example.org", ["model"], max_papers=50, frequency=Frequency.weekly,
                            weekday=4)
    session.add(Delivery(subscriber_id=daily.id, edition=EDITION - timedelta(days=1), status=DeliveryStatus.sent))
    session.add(Delivery(subscriber_id=weekly.id, edition=EDITION - timedelta(days=7), status=DeliveryStatus.sent))
    session.commit()
    send_batch(session_factory, smtp_settings, dispatched(session_factory, smtp_settings), now=NOW)
    rows = deliveries(session)

    edition_of = dict(session.execute(select(Paper.id, Paper.edition)).all())
    assert {edition_of[i] for i in rows["daily@example.org"].paper_ids} == {EDITION}
    assert len({edition_of[i] for i in rows["weekly@example.org"].paper_ids}) > 1
    assert set(rows["daily@example.org"].paper_ids) < set(rows["weekly@example.org"].paper_ids)


def test_send_now_with_an_edition_reaches_everyone_who_has_not_had_it(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    had = due_subscriber(session, "had@example.org", next_due_at=NOW + timedelta(hours=5))
    due_subscriber(session, "new@example.org", next_due_at=NOW + timedelta(hours=5))
    session.add(Delivery(subscriber_id=had.id, edition=EDITION, status=DeliveryStatus.sent))
    session.commit()
    transport = SmtpTransport(parse_smtp_url(server.url))
    run = send_now(session_factory, smtp_settings, edition=EDITION, now=NOW, transport=transport)
    assert run.report.sent == 1
    assert server.handler.recipients() == {"new@example.org": 1}
    assert any("already had" in note for note in run.notes)


def test_dkim_signature_arrives_intact_and_covers_list_unsubscribe(
    session, session_factory, smtp_settings, server, tmp_path
):
    import base64
    import subprocess

    import dkim

    private = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public = base64.b64encode(subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
                                             check=True, capture_output=True).stdout)
    signing = smtp_settings.model_copy(update={"dkim_key_file": private, "dkim_selector": "mail"})
    add_sample_papers(session, EDITION)
    due_subscriber(session, "ana@example.org")
    session.commit()
    send_batch(session_factory, signing, dispatched(session_factory, signing), now=NOW)
    (received,) = [r for r in server.handler.received if r.recipient == "ana@example.org"]
    signature = received.message["DKIM-Signature"].lower()
    assert "list-unsubscribe" in signature and "list-unsubscribe-post" in signature

    def dns(name, timeout=5):
        return b"v=DKIM1; k=rsa; p=" + public if name == b"mail._domainkey.papers.test." else None

    assert dkim.verify(received.data, dnsfunc=dns)


def test_a_slow_batch_keeps_its_claim_fresh(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    for n in range(3):
        due_subscriber(session, f"r{n}@example.org")
    session.commit()
    server.faults.data_delay = 0.3
    slow = smtp_settings.model_copy(update={"sending_timeout": 0.6})  # heartbeat every 0.2 s
    ids = dispatched(session_factory, slow)
    claims = []

    class Watching(SmtpTransport):
        def send(self, *args, **kwargs):
            session.expire_all()
            claims.append(session.scalar(select(Delivery.claimed_at).where(Delivery.id == ids[-1])))
            session.commit()
            return super().send(*args, **kwargs)

    report = send_batch(session_factory, slow, ids, transport=Watching(parse_smtp_url(server.url)), now=NOW)
    assert report.sent == 3
    assert claims[0] == NOW and claims[-1] > NOW  # refreshed while the batch ran


def test_a_batch_that_breaks_releases_its_rows_for_a_later_run(session, session_factory, smtp_settings, server):
    add_sample_papers(session, EDITION)
    due_subscriber(session, "ana@example.org")
    session.commit()
    ids = dispatched(session_factory, smtp_settings)

    class Broken:
        def match(self, session, jobs):
            raise RuntimeError("index corrupted")

    with pytest.raises(RuntimeError):
        send_batch(session_factory, smtp_settings, ids, now=NOW, composer=Broken())
    row = deliveries(session)["ana@example.org"]
    assert row.status == DeliveryStatus.pending and "index corrupted" in row.last_error
    assert row.next_attempt_at > NOW
    # The next run sends it.
    assert send_batch(session_factory, smtp_settings, ids, now=NOW + timedelta(minutes=6)).sent == 1
