"""A real SMTP server for tests (aiosmtpd, on a free port) that stores what it accepted and
applies fault rules: a reply for one address (451 once, 550 always), a dropped connection in the
middle of a batch, a 421, a slow DATA (to kill a worker while it waits).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipient: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class RcptRule:
    address: str
    reply: str  # e.g. "451 4.7.1 Try again later"
    times: int | None = None  # None: every time


@dataclass
class Faults:
    rcpt: list[RcptRule] = field(default_factory=list)
    drop_on_data: set[int] = field(default_factory=set)  # DATA number n (1-based): close without a reply
    reply_421_on_data: set[int] = field(default_factory=set)  # DATA number n: 421 and close
    drop_after_accept_on_data: set[int] = field(default_factory=set)  # accept, store, then drop before replying
    data_delay: float = 0.0  # seconds to wait in every DATA


class FaultyHandler:
    def __init__(self) -> None:
        self.faults = Faults()
        self.received: list[Received] = []
        self.data_commands = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.on_accept = None  # called (in the server's thread) after each message is stored

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            for rule in self.faults.rcpt:
                if rule.address.lower() == address.lower() and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.data_commands += 1
            number = self.data_commands
        if self.faults.data_delay:
            await asyncio.sleep(self.faults.data_delay)
        if number in self.faults.drop_on_data:
            server.transport.close()
            return "451 unreachable: the connection is closed"
        if number in self.faults.reply_421_on_data:
            server.transport.close()  # aiosmtpd's own 421 path closes as well
            return "421 4.3.2 Service shutting down"
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.received.append(Received(envelope.mail_from, recipient, bytes(envelope.content)))
        if number in self.faults.drop_after_accept_on_data:
            server.transport.close()
        if self.on_accept is not None:
            self.on_accept()
        return "250 2.0.0 Accepted"

    # What a test asserts on.
    def recipients(self) -> Counter:
        with self.lock:
            return Counter(r.recipient for r in self.received)

    def messages_for(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received if r.recipient == address]


class _FreePortController(Controller):
    """aiosmtpd binds port 0 fine but then tries to connect to port 0: read the real port first."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpTestServer:
    def __init__(self) -> None:
        self.handler = FaultyHandler()
        self.controller = _FreePortController(self.handler, hostname="127.0.0.1", port=0)

    @property
    def faults(self) -> Faults:
        return self.handler.faults

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}?starttls=off"

    def __enter__(self) -> SmtpTestServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.controller._thread is not None:
            self.controller.stop()

    def go_away(self) -> None:
        """The server is down: connections to its port are refused."""
        self.controller.stop()

    def come_back(self) -> None:
        """Up again on the same port, with the same handler (what it received so far is kept)."""
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.controller.port)
        self.controller.start()
