"""A TestClient over the real app, the test's rolled-back session, and a real outbox transport."""

from __future__ import annotations

import re
import uuid
from email import message_from_bytes, policy

import pytest
from fastapi.testclient import TestClient

from digest.mail import OutboxTransport
from digest.web import create_app
from digest.web.ratelimit import RateLimiter
from tests.conftest import REDIS_URL


@pytest.fixture
def outbox(tmp_path):
    return OutboxTransport(tmp_path / "sent")


@pytest.fixture
def limiter():
    # A key prefix of its own: parallel test runs share the machine's Redis.
    return RateLimiter(1000, window=3600, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")


@pytest.fixture
def app(settings, session_factory, outbox, limiter):
    return create_app(settings, sessions=session_factory, limiter=limiter, transport=outbox)


@pytest.fixture
def client(app, settings):
    with TestClient(app, base_url=settings.base_url, follow_redirects=False) as client:
        yield client


def csrf_token(client: TestClient, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sent_messages(outbox: OutboxTransport):
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in outbox.written]


def confirm_link(message) -> str:
    body = message.get_body(("plain",)).get_content()
    return re.search(r"https?://\S+/confirm/\S+", body).group(0)
