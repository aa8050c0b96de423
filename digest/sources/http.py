"""GET with total deadlines, a body size cap, bounded retries and back-off that honours Retry-After.

httpx's timeouts apply to each network read, so a server that sends one byte a second never
times out: a request here also has a total deadline (DIGEST_HTTP_DEADLINE), every request of one
source's fetch shares another (DIGEST_FETCH_DEADLINE), and a body is read as a stream up to
DIGEST_HTTP_MAX_BYTES. A limit reached is a one-line SourceError that names its setting.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from digest.errors import SourceError

log = logging.getLogger(__name__)

RETRYABLE = {429, 500, 502, 503, 504}
MAX_WAIT = 60.0


@dataclass(frozen=True)
class Limits:
    request_deadline: float = 60.0  # seconds for one request, headers and body
    fetch_deadline: float = 600.0  # seconds for every request of one source's fetch, waits included
    max_bytes: int = 10_000_000  # a real page is under 1 MB

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(settings.http_deadline, settings.fetch_deadline, settings.http_max_bytes)


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class Watchdog:
    """Shuts the request's socket when its deadline passes, which makes a read blocked in the
    middle of trickling headers or body return at once (httpx has no total timeout of its own).
    The socket is learnt from httpx's `trace` extension when the connection is made, so the
    client must not reuse kept-alive connections (fetch.http_client keeps none)."""

    def __init__(self, seconds: float) -> None:
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict) -> None:
        if event.endswith("connect_tcp.complete"):  # "connection.connect_tcp.complete", via a proxy too
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                self._sockets.append(sock)
                if self._fired:  # the deadline passed while connecting
                    self._shut(sock)

    def _fire(self) -> None:
        self._fired = True
        for sock in self._sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with suppress(OSError):  # already closed: nothing left to stop
            sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


class Fetcher:
    """One source's HTTP access for one fetch: retries transient failures within the limits, then
    raises SourceError (one line). The fetch's deadline starts with its first request."""

    def __init__(
        self,
        client: httpx.Client,
        name: str,
        attempts: int = 4,
        backoff: float = 2.0,
        min_interval: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.name = name
        self.attempts = attempts
        self.backoff = backoff
        self.min_interval = min_interval  # arXiv asks for one request every 3 seconds
        self.sleep = sleep
        self.limits = limits
        self.clock = clock
        self._last_request = float("-inf")
        self._fetch_ends: float | None = None

    def _throttle(self) -> None:
        wait = self._last_request + self.min_interval - self.clock()
        if wait > 0:
            self.sleep(wait)
        self._last_request = self.clock()

    def get(self, url: str, params: dict | None = None) -> bytes:
        """The whole body of a successful answer."""
        if self._fetch_ends is None:
            self._fetch_ends = self.clock() + self.limits.fetch_deadline
        problem = ""
        for attempt in range(1, self.attempts + 1):
            self._throttle()
            delay = self.backoff * 2 ** (attempt - 1)
            ends = min(self.clock() + self.limits.request_deadline, self._fetch_ends)
            if ends <= self.clock():
                raise self._past_deadline(url, ends)
            try:
                response, body = self._request(url, params, ends)
            except httpx.RequestError as exc:  # transport failures, undecodable bodies, redirect loops
                if self.clock() >= ends:  # the watchdog cut it, or the last read came too late
                    raise self._past_deadline(url, ends) from None
                problem = describe(exc)
                if isinstance(exc, httpx.ConnectError) and attempt >= 2:
                    break  # no route or no such host: more tries only delay the message
            else:
                if response.status_code < 400:
                    return body
                if response.status_code not in RETRYABLE:
                    raise SourceError(f"{self.name}: {url} answered {response.status_code} {response.reason_phrase}")
                problem = f"answered {response.status_code} {response.reason_phrase}"
                delay = retry_after_seconds(response) or delay
            if attempt < self.attempts:
                self._wait(url, problem, min(delay, MAX_WAIT), attempt)
        raise SourceError(f"{self.name}: {url} {problem} after {attempt} tries")

    def _request(self, url: str, params: dict | None, ends: float) -> tuple[httpx.Response, bytes]:
        with Watchdog(ends - self.clock()) as watchdog, self.client.stream(
            "GET", url, params=params, extensions={"trace": watchdog.trace}
        ) as response:
            if response.status_code >= 400:
                return response, b""  # the status says it all; the body is not read
            return response, self._read_body(response, url, ends)

    def _read_body(self, response: httpx.Response, url: str, ends: float) -> bytes:
        cap = self.limits.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_big(url)
        chunks, size = [], 0
        for chunk in response.iter_bytes():  # decoded: a compressed answer is capped at its real size
            size += len(chunk)
            if size > cap:
                raise self._too_big(url)
            if self.clock() >= ends:
                raise self._past_deadline(url, ends)
            chunks.append(chunk)
        return b"".join(chunks)

    def _wait(self, url: str, problem: str, delay: float, attempt: int) -> None:
        if self.clock() + delay > self._fetch_ends:
            raise SourceError(
                f"{self.name}: {url} {problem}; waiting {delay:g} s would pass DIGEST_FETCH_DEADLINE "
                f"({self.limits.fetch_deadline:g} s)"
            )
        log.warning("%s: %s %s; try %d of %d in %.0f s", self.name, url, problem, attempt + 1, self.attempts, delay)
        self.sleep(delay)

    def _past_deadline(self, url: str, ends: float) -> SourceError:
        if ends >= self._fetch_ends:
            limit = f"before the fetch's deadline of {self.limits.fetch_deadline:g} s (DIGEST_FETCH_DEADLINE)"
        else:
            limit = f"within {self.limits.request_deadline:g} s (DIGEST_HTTP_DEADLINE)"
        return SourceError(f"{self.name}: {url} did not finish answering {limit}")

    def _too_big(self, url: str) -> SourceError:
        return SourceError(f"{self.name}: {url} answered more than {self.limits.max_bytes:,} bytes (DIGEST_HTTP_MAX_BYTES)")


def describe(exc: httpx.RequestError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    return f"connection failed ({exc.__class__.__name__}: {exc})"
