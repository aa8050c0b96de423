"""Fixed-window request counters per client address, for the subscribe form.

Counters live in Redis (DIGEST_BROKER_URL) when it answers: every web process behind a load
balancer then shares one count, and a restart does not reset it. The quick start runs without
Redis, so when it cannot be reached the counters fall back to this process's memory: with one
web process that is exact, with several each enforces the limit alone (at most N times the limit),
which still stops a single client from mail-bombing through us.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time

import redis

log = logging.getLogger(__name__)


def client_key(client: str) -> str:
    """A bounded key for a client address. An IPv4 address as written; an IPv6 address by its /64
    (one subscriber line holds a whole /64, and would otherwise get 2^64 counters); anything else
    (a forwarded header that is not an address) by a hash, so a header of any size makes a key of
    40 characters at most."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return "h-" + hashlib.sha256(client.encode("utf-8", "replace")).hexdigest()[:32]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class MemoryCounter:
    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, window: int) -> int:
        now = time.monotonic()
        with self._lock:
            if len(self._counts) > 100_000:  # a flood of distinct addresses must not eat memory
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, expires = self._counts.get(key, (0, 0.0))
            if expires <= now:
                count, expires = 0, now + window
            count += 1
            self._counts[key] = (count, expires)
            return count


class RedisCounter:
    def __init__(self, client) -> None:
        self.client = client

    def hit(self, key: str, window: int) -> int:
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        count, _ = pipe.execute()
        return int(count)


class RateLimiter:
    """`allow(client)` is False once a client used up `limit` requests in the current window."""

    def __init__(self, limit: int, window: int = 3600, redis_url: str | None = None, prefix: str = "digest:rl") -> None:
        self.limit = limit
        self.window = window
        self.prefix = prefix
        self.memory = MemoryCounter()
        self.redis: RedisCounter | None = None
        if redis_url and redis_url.startswith(("redis://", "rediss://")):
            try:
                client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
                client.ping()
                self.redis = RedisCounter(client)
            except Exception as exc:  # noqa: BLE001 - any failure means: count in memory
                log.warning("rate limits counted in this process: Redis at the broker URL is not reachable (%s)", exc)

    @property
    def backend(self) -> str:
        return "redis" if self.redis else "memory"

    def allow(self, client: str, scope: str = "subscribe", limit: int | None = None, window: int | None = None) -> bool:
        """One more request of `client` in `scope`; False past the scope's limit (the limiter's
        own, unless this scope has its own `limit` per `window` seconds)."""
        key = f"{self.prefix}:{scope}:{client_key(client)}"
        limit, window = limit or self.limit, window or self.window
        if self.redis is not None:
            try:
                return self.redis.hit(key, window) <= limit
            except Exception as exc:  # noqa: BLE001 - Redis went away: keep serving, count here
                log.warning("Redis rate-limit counter failed, counting in memory: %s", exc)
        return self.memory.hit(key, window) <= limit

    def allow_preview(self, subscriber_id: int, client: str, limit: int, window: int = 60) -> bool:
        """One more preview (the live one, or a settings page, which shows one): at most `limit`
        a `window` per link (its subscriber) and per client address. A reader typing fast stays
        well under it; a flood, from one address or through one link, does not."""
        return (self.allow(f"link-{subscriber_id}", "preview-link", limit, window)
                and self.allow(client, "preview-client", limit, window))
