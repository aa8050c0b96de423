"""The SMTP transport against a real SMTP server with faults: one connection reused, reconnect
after a drop or a 421, 4xx transient, 5xx on the address permanent, a rate limit."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from digest.config import parse_smtp_url
from digest.mail import (
    OutboxTransport,
    Pacer,
    PermanentFailure,
    ServerUnavailable,
    SmtpTransport,
    TransientFailure,
)
from tests.smtp_server import FaultyHandler, RcptRule, SmtpTestServer, _FreePortController


def message(to: str, n: int = 0) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "digest@papers.test"
    msg["To"] = to
    msg["Subject"] = f"Digest {n}"
    msg.set_content(f"Body {n}\n")
    return msg


class PipeliningHandler(FaultyHandler):
    """The same server and faults, advertising PIPELINING (RFC 2920) as Postfix does: the
    transport then sends MAIL, RCPT and DATA together."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture(params=["one command at a time", "pipelining"])
def server(request):
    running = SmtpTestServer()
    if request.param == "pipelining":
        running.handler = PipeliningHandler()
        running.controller = _FreePortController(running.handler, hostname="127.0.0.1", port=0)
    with running:
        running.pipelining = request.param == "pipelining"
        yield running


def transport_for(server: SmtpTestServer, **kw) -> SmtpTransport:
    return SmtpTransport(parse_smtp_url(server.url), timeout=5, **kw)


def test_one_connection_carries_many_messages(server):
    transport = transport_for(server)
    for n in range(5):
        transport.send(message(f"r{n}@example.org", n), "digest@papers.test", f"r{n}@example.org")
    transport.close()
    assert sorted(server.handler.recipients()) == [f"r{n}@example.org" for n in range(5)]
    assert server.handler.connections == 1
    assert server.handler.messages_for("r3@example.org")[0]["Subject"] == "Digest 3"


def test_the_transport_uses_pipelining_exactly_when_offered(server):
    transport = transport_for(server)
    transport.send(message("a@example.org"), "digest@papers.test", "a@example.org")
    assert ("pipelining" in transport._connection.esmtp_features) == server.pipelining
    transport.close()


def test_lines_that_start_with_a_dot_arrive_intact(server):
    msg = EmailMessage()
    msg["From"] = "digest@papers.test"
    msg["To"] = "a@example.org"
    msg["Subject"] = "Dots"
    msg.set_content(".leading dot\n..two dots\n.\nend\n")
    transport = transport_for(server)
    transport.send(msg, "digest@papers.test", "a@example.org")
    transport.send(message("b@example.org"), "digest@papers.test", "b@example.org")  # the stream is still in step
    transport.close()
    received = server.handler.messages_for("a@example.org")[0].get_content().replace("\r\n", "\n")
    assert received == ".leading dot\n..two dots\n.\nend\n"
    assert server.handler.recipients() == {"a@example.org": 1, "b@example.org": 1}


def test_4xx_on_the_address_is_transient_and_the_connection_goes_on(server):
    server.faults.rcpt.append(RcptRule("grey@example.org", "451 4.7.1 Greylisted, try later", times=1))
    transport = transport_for(server)
    with pytest.raises(TransientFailure) as failure:
        transport.send(message("grey@example.org"), "digest@papers.test", "grey@example.org")
    assert failure.value.code == 451 and not isinstance(failure.value, PermanentFailure)
    transport.send(message("ok@example.org"), "digest@papers.test", "ok@example.org")
    transport.send(message("grey@example.org"), "digest@papers.test", "grey@example.org")  # second try passes
    assert server.handler.recipients() == {"ok@example.org": 1, "grey@example.org": 1}
    assert server.handler.connections == 1


def test_5xx_on_the_address_is_permanent_and_blames_the_recipient(server):
    server.faults.rcpt.append(RcptRule("gone@example.org", "550 5.1.1 No such user"))
    transport = transport_for(server)
    with pytest.raises(PermanentFailure) as failure:
        transport.send(message("gone@example.org"), "digest@papers.test", "gone@example.org")
    assert failure.value.code == 550 and failure.value.recipient
    transport.send(message("ok@example.org"), "digest@papers.test", "ok@example.org")
    assert server.handler.recipients() == {"ok@example.org": 1}


def test_a_dropped_connection_reconnects_and_the_message_goes_through(server):
    server.faults.drop_on_data.add(2)
    transport = transport_for(server)
    for n in range(4):
        transport.send(message(f"r{n}@example.org", n), "digest@papers.test", f"r{n}@example.org")
    assert server.handler.recipients() == {f"r{n}@example.org": 1 for n in range(4)}
    assert transport.connections_opened == 2


def test_421_reconnects_and_goes_on(server):
    server.faults.reply_421_on_data.add(1)
    transport = transport_for(server)
    transport.send(message("a@example.org"), "digest@papers.test", "a@example.org")
    transport.send(message("b@example.org"), "digest@papers.test", "b@example.org")
    assert server.handler.recipients() == {"a@example.org": 1, "b@example.org": 1}
    assert transport.connections_opened == 2


def test_a_connection_that_keeps_dropping_is_a_transient_failure(server):
    server.faults.drop_on_data.update({1, 2, 3})
    transport = transport_for(server)
    with pytest.raises(TransientFailure):
        transport.send(message("a@example.org"), "digest@papers.test", "a@example.org")
    assert server.handler.recipients() == {}


def test_an_unreachable_server_stops_the_batch_without_blaming_anyone():
    with SmtpTestServer() as gone:
        url = gone.url
    transport = SmtpTransport(parse_smtp_url(url), timeout=2)
    with pytest.raises(ServerUnavailable):
        transport.send(message("a@example.org"), "digest@papers.test", "a@example.org")


def test_the_pacer_spaces_messages_evenly():
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    now[0] += 10  # an idle pause earns no burst credit beyond one slot
    limiter.wait()
    limiter.wait()
    assert slept[-1] == 0.25


def test_rate_limit_holds_over_a_real_connection(server):
    import time

    transport = transport_for(server, rate=20.0)
    start = time.monotonic()
    for n in range(6):
        transport.send(message(f"r{n}@example.org", n), "digest@papers.test", f"r{n}@example.org")
    assert time.monotonic() - start >= 5 / 20.0
    assert len(server.handler.recipients()) == 6


def test_outbox_writes_whole_eml_files(tmp_path):
    outbox = OutboxTransport(tmp_path / "outbox")
    path = outbox.send(message("a@example.org"), "digest@papers.test", "a@example.org", name="2026-11-26-a@example.org")
    assert path.name == "2026-11-26-a@example.org.eml"
    assert b"\r\nSubject: Digest 0\r\n" in path.read_bytes()
    assert not list((tmp_path / "outbox").glob("*.tmp"))
