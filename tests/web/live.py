"""The app served by a real uvicorn (in a thread, on a free port) and a real SMTP server (aiosmtpd)
that keeps what it accepted: for tests that need real concurrency, real timing of the answer, or a
real client address."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy

import uvicorn
from aiosmtpd.controller import Controller


class Inbox:
    """aiosmtpd handler: every message it accepted, with its recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], object]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"

    def to(self, address: str) -> list:
        with self.lock:
            return [message for rcpt, message in self.messages if address in rcpt]

    def confirm_links(self, address: str) -> list[str]:
        bodies = [message.get_body(("plain",)).get_content() for message in self.to(address)]
        return [re.search(r"https?://\S+/confirm/\S+", body).group(0) for body in bodies]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@contextmanager
def served(app_for, make_config=None) -> Iterator[str]:
    """`app_for(base_url)` served by uvicorn on 127.0.0.1 (configured by `make_config(app)`, e.g.
    as `digest web` does); yields the base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = app_for(base_url)
    config = make_config(app) if make_config else uvicorn.Config(app, log_level="warning")
    config.lifespan = "off"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
