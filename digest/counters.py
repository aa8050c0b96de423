"""What each process counts (messages sent, SMTP replies and their latency, fetch results, refused
subscribe posts, confirmations), and the hand-off of those counts to a sink.

Counting is one prometheus-client increment in this process's memory: no I/O, no lock shared with
another process, about half a microsecond, so the sending loop does not notice it. A background
thread hands what was counted since the last hand-off to the sink every few seconds and once more
at exit; `digest.operations.metrics` is the sink that adds those deltas to the store, where
`/metrics` reads the totals of every process on every machine (docs/operations.md says why this
and not prometheus-client's multiprocess directory, which sums only the processes of one host).

This module imports nothing of ours: the mail, delivery, fetch and web rooms all count through it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERY_OUTCOMES = Counter(
    "digest_delivery_outcomes", "Digests handled by a sending process, by outcome (sent: accepted by the "
    "SMTP server or written to the outbox).", ["outcome"], registry=REGISTRY,
)
SMTP_REPLIES = Counter(
    "digest_smtp_replies", "SMTP exchanges of one message, by the class of the server's last reply "
    "(none: the connection failed).", ["class"], registry=REGISTRY,
)
SMTP_SECONDS = Histogram(
    "digest_smtp_send_seconds", "Seconds from MAIL FROM to the server's reply to the message data.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)
FETCH_PAPERS = Counter(
    "digest_fetch_papers", "Papers a fetch stored, by source and result.", ["source", "result"], registry=REGISTRY,
)
FETCH_RUNS = Counter(
    "digest_fetch_runs", "Fetches of one source, by result (ok or error).", ["source", "result"], registry=REGISTRY,
)
SUBSCRIBE_REFUSED = Counter(
    "digest_subscribe_rate_limited", "Subscribe-form posts refused with 429 by the rate limit.", registry=REGISTRY,
)
CONFIRMATIONS_SENT = Counter(
    "digest_confirmations_sent", "Confirmation emails handed to the transport.", registry=REGISTRY,
)
ADMIN_LOGINS = Counter(
    "digest_admin_logins", "Admin console login attempts, by result.", ["result"], registry=REGISTRY,
)

OUTCOMES = ("sent", "skipped", "suppressed", "failed", "bounced", "retrying")
_outcome = {name: DELIVERY_OUTCOMES.labels(name) for name in OUTCOMES}  # bound once: no lookup per message
_reply = {key: SMTP_REPLIES.labels(key) for key in ("2xx", "3xx", "4xx", "5xx", "none")}


# ---------------------------------------------------------------- the hooks (one call each)


def delivery_outcome(outcome: str) -> None:
    (_outcome.get(outcome) or DELIVERY_OUTCOMES.labels(outcome)).inc()


def smtp_exchange(code: int | None, seconds: float) -> None:
    _reply.get(f"{code // 100}xx" if code else "none", _reply["none"]).inc()
    SMTP_SECONDS.observe(seconds)


def fetch_result(source: str, new: int, updated: int, unchanged: int, skipped: int, error: str | None) -> None:
    for result, count in (("new", new), ("updated", updated), ("unchanged", unchanged), ("skipped", skipped)):
        if count:
            FETCH_PAPERS.labels(source, result).inc(count)
    FETCH_RUNS.labels(source, "error" if error else "ok").inc()


def subscribe_refused() -> None:
    SUBSCRIBE_REFUSED.inc()


def confirmation_sent() -> None:
    CONFIRMATIONS_SENT.inc()


def admin_login(result: str) -> None:
    ADMIN_LOGINS.labels(result).inc()


# ---------------------------------------------------------------- handing counts to the sink

Key = tuple[str, str]  # (sample name, labels as sorted JSON)
Sink = Callable[[dict[Key, float]], None]


def labels_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":")) if labels else ""


def snapshot() -> dict[Key, float]:
    """Every sample this process counted so far (the `_created` timestamps are not counts)."""
    values: dict[Key, float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                values[(sample.name, labels_key(sample.labels))] = sample.value
    return values


def families() -> dict[str, tuple[str, str]]:
    """Each family this module counts: name -> (kind, help), for a scrape to rebuild them."""
    return {family.name: (family.type, family.documentation) for family in REGISTRY.collect()}


class Handoff:
    """Hands this process's new counts to the sink: every `interval` seconds, on `flush()`, and at
    exit. A sink that fails (database away) keeps the counts for the next try."""

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self.interval = 10.0
        self.baseline: dict[Key, float] = {}
        self.pid: int | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, sink: Sink, interval: float) -> None:
        """Hand what this process counts from now on to `sink`. A process starts before it counts
        anything; in a forked child (a Celery pool process) what it inherited is the parent's."""
        with self.lock:
            self.baseline = snapshot()
            self.sink, self.interval = sink, interval
            if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
                return
            self.pid = os.getpid()
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._run, args=(self.stop,), name="digest-counters", daemon=True)
            self.thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.flush()

    def flush(self) -> int:
        """Hand over what was counted since the last hand-off; how many samples changed."""
        if self.sink is None or self.pid != os.getpid():
            return 0
        with self.lock:
            current = snapshot()
            deltas = {key: value - self.baseline.get(key, 0.0) for key, value in current.items()
                      if value != self.baseline.get(key, 0.0)}
            if not deltas:
                return 0
            try:
                self.sink(deltas)
            except Exception as exc:  # noqa: BLE001 - counting must never break the work it counts
                log.warning("counters not written (kept for the next try): %s", exc)
                return 0
            self.baseline = current
            return len(deltas)

    def close(self, flush: bool = True) -> None:
        """Stop the thread after a last hand-off (at exit, or when a worker process ends)."""
        if self.pid != os.getpid():
            return
        self.stop.set()
        if flush:
            self.flush()
        self.sink = None
        self.thread = None


HANDOFF = Handoff()


def _after_fork() -> None:
    # The thread did not survive the fork and a lock held by it would never be released: the child
    # starts clean, and counts nothing to the sink unless it calls start() itself.
    HANDOFF.lock = threading.Lock()
    HANDOFF.thread = None
    HANDOFF.sink = None


os.register_at_fork(after_in_child=_after_fork)
atexit.register(HANDOFF.close)

start = HANDOFF.start
flush = HANDOFF.flush
close = HANDOFF.close
