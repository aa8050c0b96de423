"""`digest web` as it serves: uvicorn configured by digest.web.server_config, a real client on
loopback. Forwarded client addresses, rate-limit keys, slow headers, the connection limit."""

from __future__ import annotations

import re
import socket
import uuid

import httpx
import pytest
import redis

from digest.config import load_settings
from digest.db import session_factory as sessions_of
from digest.web import create_app, server_config
from digest.web.ratelimit import RateLimiter, client_key
from tests.conftest import REDIS_URL, TEST_SECRET_KEY
from tests.web.live import served, wait_until


@pytest.fixture
def prefix():
    return f"digest-test:{uuid.uuid4().hex}"


@pytest.fixture
def session_factory(committed_db):
    """Real sessions on committed rows: uvicorn's threads must not share the test's one session."""
    return sessions_of(committed_db)


def app_maker(database_url, session_factory, tmp_path, prefix, limit=3, **settings_values):
    def settings_for(base_url):
        return load_settings(database_url=database_url, base_url=base_url, secret_key=TEST_SECRET_KEY,
                             broker_url=REDIS_URL, outbox_dir=tmp_path / "outbox", sources="hf", **settings_values)

    def app_for(base_url):
        limiter = RateLimiter(limit, redis_url=REDIS_URL, prefix=prefix)
        return create_app(settings_for(base_url), sessions=session_factory, limiter=limiter, transport=None)

    return app_for, settings_for("http://127.0.0.1")


def posts(base_url: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)
        return [client.post("/subscribe", headers={"X-Forwarded-For": value},
                            data={"csrf_token": token, "email": f"r{n}@example.org", "topics": "agents"}).status_code
                for n, value in enumerate(forwarded_for)]


def test_a_client_on_loopback_cannot_escape_the_limit_with_a_forged_forwarded_address(
        database_url, session_factory, tmp_path, prefix):
    app_for, settings = app_maker(database_url, session_factory, tmp_path, prefix)
    with served(app_for, lambda app: server_config(app, settings, "127.0.0.1", 0)) as base_url:
        codes = posts(base_url, [f"203.0.113.{n}" for n in range(6)])
    assert codes == [303, 303, 303, 429, 429, 429]


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(database_url, session_factory, tmp_path, prefix):
    app_for, settings = app_maker(database_url, session_factory, tmp_path, prefix, trusted_proxies="127.0.0.1")
    with served(app_for, lambda app: server_config(app, settings, "127.0.0.1", 0)) as base_url:
        # Six clients behind the proxy, two requests each; then one client four more times, with
        # an address it forged itself in front (the proxy appends the real one, which counts).
        codes = posts(base_url, [f"198.51.100.{n}" for n in range(6)] * 2)
        forged = posts(base_url, [f"10.9.9.{n}, 198.51.100.200" for n in range(4)])
    assert codes == [303] * 12 and forged == [303, 303, 303, 429]


def test_rate_limit_keys_stay_short_whatever_the_forwarded_header(database_url, session_factory, tmp_path, prefix):
    app_for, settings = app_maker(database_url, session_factory, tmp_path, prefix, trusted_proxies="127.0.0.1")
    with served(app_for, lambda app: server_config(app, settings, "127.0.0.1", 0)) as base_url:
        assert posts(base_url, ["a" * 8000]) == [303]
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{prefix}:*")
    assert keys and max(len(key) for key in keys) <= len(prefix) + len(":subscribe:") + 40
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"


def test_trusted_proxies_must_be_addresses_or_networks():
    from digest.errors import ConfigError

    assert load_settings(trusted_proxies="10.0.0.5, 10.1.0.0/16, ::1").trusted_proxy_list == ["10.0.0.5", "10.1.0.0/16", "::1"]
    with pytest.raises(ConfigError, match="DIGEST_TRUSTED_PROXIES: 'proxy.internal' is not an IP address"):
        load_settings(trusted_proxies="proxy.internal")


def slow_connections(port: int, count: int) -> list[socket.socket]:
    connections = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        connections.append(connection)
    return connections


def closed_by_server(connection: socket.socket) -> bool:
    connection.settimeout(0.01)
    try:
        connection.sendall(b"X-Slow: 1\r\n")
        return connection.recv(1) == b""
    except (socket.timeout, BlockingIOError):
        return False
    except OSError:
        return True


def test_connections_whose_headers_never_finish_are_closed(database_url, session_factory, tmp_path, prefix):
    app_for, settings = app_maker(database_url, session_factory, tmp_path, prefix)
    make = lambda app: server_config(app, settings, "127.0.0.1", 0, header_timeout=1.0, log_level="warning")  # noqa: E731
    with served(app_for, make) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        slow = slow_connections(port, 50)
        with httpx.Client(base_url=base_url, timeout=10) as client:
            assert client.get("/").status_code == 200  # an ordinary visitor meanwhile
            assert wait_until(lambda: all(closed_by_server(c) for c in slow), timeout=20)
            assert client.get("/").status_code == 200  # a kept-alive connection that asks in time lives on
    for connection in slow:
        connection.close()


def test_beyond_the_connection_limit_new_requests_are_refused_at_once(database_url, session_factory, tmp_path, prefix):
    app_for, settings = app_maker(database_url, session_factory, tmp_path, prefix, web_max_connections=5)
    make = lambda app: server_config(app, settings, "127.0.0.1", 0, log_level="warning")  # noqa: E731
    with served(app_for, make) as base_url:
        slow = slow_connections(int(base_url.rsplit(":", 1)[1]), 5)
        try:
            assert httpx.get(base_url + "/", timeout=10).status_code == 503
        finally:
            for connection in slow:
                connection.close()
        assert wait_until(lambda: httpx.get(base_url + "/", timeout=10).status_code == 200)
