"""GET with time-outs, bounded retries and back-off that honours Retry-After."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

import httpx

from digest.errors import SourceError

log = logging.getLogger(__name__)

RETRYABLE = {429, 500, 502, 503, 504}
MAX_WAIT = 60.0


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


class Fetcher:
    """One source's HTTP access: retries transient failures, then raises SourceError (one line)."""

    def __init__(
        self,
        client: httpx.Client,
        name: str,
        attempts: int = 4,
        backoff: float = 2.0,
        min_interval: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.name = name
        self.attempts = attempts
        self.backoff = backoff
        self.min_interval = min_interval  # arXiv asks for one request every 3 seconds
        self.sleep = sleep
        self._last_request = float("-inf")

    def _throttle(self) -> None:
        wait = self._last_request + self.min_interval - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last_request = time.monotonic()

    def get(self, url: str, params: dict | None = None) -> httpx.Response:
        problem = ""
        for attempt in range(1, self.attempts + 1):
            self._throttle()
            delay = self.backoff * 2 ** (attempt - 1)
            try:
                response = self.client.get(url, params=params)
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.ConnectError as exc:
                problem = f"cannot connect ({exc})"
                if attempt >= 2:  # no route or no such host: more tries only delay the message
                    break
            except httpx.TransportError as exc:
                problem = f"connection failed ({exc.__class__.__name__}: {exc})"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRYABLE:
                    raise SourceError(f"{self.name}: {url} answered {response.status_code} {response.reason_phrase}")
                problem = f"answered {response.status_code} {response.reason_phrase}"
                delay = retry_after_seconds(response) or delay
            if attempt < self.attempts:
                delay = min(delay, MAX_WAIT)
                log.warning("%s: %s %s; try %d of %d in %.0f s", self.name, url, problem, attempt + 1, self.attempts, delay)
                self.sleep(delay)
        raise SourceError(f"{self.name}: {url} {problem} after {attempt} tries")
