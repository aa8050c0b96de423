"""Sending a built batch over one connection, recording each outcome right after the server answered.

The sender needs two small things, declared here: a transport that carries one message at a time
(`digest.mail.Transport`) and an outcome store (`Outcomes`: `digest.delivery.recorder`). Its policy:
a 4xx is tried again in the same run (3 tries, `smtp_retry_delay` seconds apart), then left
pending with exponential back-off and given up after 3 days; a 5xx on the address bounces the row
and suppresses the address; a server that cannot be reached stops the batch, and everything not
yet sent waits for a later run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from digest import counters
from digest.config import Settings
from digest.delivery import ledger
from digest.delivery.compose import BuildFailure, Built, Composed, DigestComposer, Job, build_batch
from digest.delivery.ledger import SessionFactory
from digest.delivery.recorder import Recorder
from digest.delivery.windows import FIRST_BACKOFF, SAME_RUN_TRIES, backoff, given_up, utcnow
from digest.mail import (
    PermanentFailure,
    ServerUnavailable,
    TransientFailure,
    Transport,
    check_sending,
    envelope_sender,
    open_transport,
)
from digest.models import DeliveryStatus

log = logging.getLogger(__name__)


class Outcomes(Protocol):
    """Where the sender writes what happened to each delivery (the Recorder)."""

    def __call__(self, delivery_id: int, **values) -> None: ...

    def refresh_claims(self, ids: Sequence[int], at: datetime) -> None: ...

    def suppress(self, email: str, reason: str) -> None: ...


@dataclass
class SendReport:
    sent: int = 0
    skipped: int = 0  # nothing matched (and not asked to be told), or no longer active
    failed: int = 0  # given up, or a message the server refused (not the address)
    bounced: int = 0  # 5xx on the address: suppressed
    suppressed: int = 0  # not sent because the address is suppressed
    retrying: int = 0  # 4xx after the same-run tries: pending with back-off
    not_claimed: int = 0  # another worker holds or finished these
    errors: list[str] = field(default_factory=list)
    # Set when the server stayed unreachable past DIGEST_SMTP_OUTAGE_WAIT: try the batch again in
    # this many seconds (a Celery task's countdown) rather than at the rows' back-off.
    retry_after: float | None = None
    paths: list[str] = field(default_factory=list)  # outbox files written

    def add(self, other: SendReport) -> None:
        for name in ("sent", "skipped", "failed", "bounced", "suppressed", "retrying", "not_claimed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        self.paths.extend(other.paths)
        if other.retry_after is not None:
            self.retry_after = other.retry_after

    def summary(self) -> str:
        return (
            f"{self.sent} sent, {self.skipped} skipped (nothing matched), {self.failed} failed, "
            f"{self.suppressed + self.bounced} suppressed"
            + (f" ({self.bounced} bounced now)" if self.bounced else "")
            + (f", {self.retrying} to retry later" if self.retrying else "")
        )


@dataclass
class _Pending:
    job: Job
    composed: Composed
    tries: int = 0
    retry_at: float = 0.0
    last_error: str = ""


def _no_progress(**counts) -> None:
    pass


@dataclass
class BatchSender:
    """One claimed batch on its way out: skip what is not to be sent, deliver the rest in rounds
    (the first, then the 4xx retries), leave for later what cannot go now."""

    settings: Settings
    transport: Transport
    record: Outcomes
    claimed: Sequence[int]
    now: datetime
    report: SendReport = field(default_factory=SendReport)
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[..., None] = _no_progress
    _started: float = field(default=0.0, init=False)
    _last_heartbeat: float = field(default=0.0, init=False)

    def run(self, built: Built) -> SendReport:
        for delivery_id, reason in built.skipped:
            self.skip(delivery_id, reason)
        ready = [_Pending(job, composed) for job, composed in built.built if self.ready(job, composed)]
        self.deliver_all(ready)
        return self.report

    def count(self, name: str) -> None:
        setattr(self.report, name, getattr(self.report, name) + 1)
        counters.delivery_outcome(name)
        self.progress(**{name: 1})

    def skip(self, delivery_id: int, reason: str) -> None:
        self.record(delivery_id, status=DeliveryStatus.skipped, last_error=reason)
        self.count("suppressed" if reason == "suppressed" else "skipped")

    def ready(self, job: Job, composed: Composed | None | BuildFailure) -> bool:
        """Whether this job has a message to send; records the ones that do not."""
        if isinstance(composed, BuildFailure):  # only the subscriber's own data fails it for good
            if composed.final:
                self.record(job.delivery_id, status=DeliveryStatus.failed, last_error=composed.reason[:1000])
                self.count("failed")
            else:
                self.leave_for_later(job, composed.reason)
            return False
        if composed is None:  # nothing matched, and not asked to be told
            self.record(job.delivery_id, status=DeliveryStatus.skipped, paper_ids=[], last_error=None)
            self.count("skipped")
            return False
        return True

    def deliver_all(self, queue: list[_Pending]) -> None:
        self._started = self._last_heartbeat = time.monotonic()
        rounds = [queue]
        while rounds:
            current, retry = rounds.pop(0), []
            for position, item in enumerate(current):
                self.keep_claims_fresh()
                try:
                    self.deliver_through_outage(item, retry)
                except ServerUnavailable as exc:
                    # Nobody's fault but the server's: everything not yet sent waits for a later run.
                    self.report.errors.append(str(exc))
                    if exc.unreachable:
                        self.report.retry_after = self.settings.smtp_outage_retry
                    log.error("stopping the batch: %s", exc)
                    for left in [item, *current[position + 1 :], *retry, *(i for r in rounds for i in r)]:
                        self.leave_for_later(left.job, str(exc))
                    return
            if retry:
                rounds.append(sorted(retry, key=lambda i: i.retry_at))

    def keep_claims_fresh(self) -> None:
        """A batch slowed down by a crawling (or absent) server keeps its claim fresh, so that no
        other worker mistakes it for dead and sends its rows a second time."""
        if time.monotonic() - self._last_heartbeat > self.settings.sending_timeout / 3:
            self.record.refresh_claims(self.claimed, self.now + timedelta(seconds=time.monotonic() - self._started))
            self._last_heartbeat = time.monotonic()

    def deliver_through_outage(self, item: _Pending, retry: list[_Pending]) -> None:
        """deliver(), riding out an outage: a server that cannot be reached is tried again 1 s,
        2 s, 4 s ... apart (at most smtp_outage_retry) for smtp_outage_wait seconds, and the batch
        goes on with the same message as soon as it answers."""
        since, delay = None, 1.0
        while True:
            try:
                return self.deliver(item, retry)
            except ServerUnavailable as exc:
                waited = time.monotonic() - since if since is not None else 0.0
                left = self.settings.smtp_outage_wait - waited
                if not exc.unreachable or left <= 0:
                    raise
                if since is None:
                    since = time.monotonic()
                    log.warning("%s; trying again for up to %g s", exc, self.settings.smtp_outage_wait)
                self.sleep(min(delay, self.settings.smtp_outage_retry, left))
                delay *= 2
                self.keep_claims_fresh()

    def deliver(self, item: _Pending, retry: list[_Pending]) -> None:
        """Send one message and record what the server said; a 4xx goes to `retry` while tries last."""
        if item.retry_at and (wait := item.retry_at - time.monotonic()) > 0:
            self.sleep(wait)
        item.tries += 1
        composed, delivery_id = item.composed, item.job.delivery_id
        try:
            path = self.transport.send(composed.data, envelope_sender(self.settings), composed.recipient,
                                       name=f"{item.job.edition.isoformat()}-{composed.recipient}")
        except PermanentFailure as exc:
            self.record(delivery_id, status=DeliveryStatus.bounced if exc.recipient else DeliveryStatus.failed,
                        last_error=str(exc)[:1000])
            if exc.recipient:
                self.record.suppress(composed.recipient, f"bounced: {exc}")
            self.count("bounced" if exc.recipient else "failed")
            return
        except ServerUnavailable:
            item.tries -= 1  # not this message's try: no server took it
            raise
        except TransientFailure as exc:
            item.last_error = str(exc)
            if item.tries < SAME_RUN_TRIES:
                item.retry_at = time.monotonic() + self.settings.smtp_retry_delay * item.tries
                retry.append(item)
            else:
                self.leave_for_later(item.job, item.last_error)
            return
        self.record(delivery_id, status=DeliveryStatus.sent, sent_at=utcnow(), message_id=composed.message_id,
                    paper_ids=composed.paper_ids, last_error=None)
        if path is not None:
            self.report.paths.append(str(path))
        self.count("sent")

    def leave_for_later(self, job: Job, error: str) -> None:
        if given_up(job.created_at, self.now):
            self.record(job.delivery_id, status=DeliveryStatus.failed, last_error=error[:1000])
            self.count("failed")
        else:
            self.record(job.delivery_id, status=DeliveryStatus.pending, last_error=error[:1000],
                        next_attempt_at=self.now + backoff(job.attempts))
            self.count("retrying")


def send_claimed(
    factory: SessionFactory,
    settings: Settings,
    claimed: Sequence[int],
    transport: Transport,
    now: datetime,
    report: SendReport,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[..., None] | None = None,
    composer: DigestComposer | None = None,
    built=None,
) -> SendReport:
    """Build (unless `built`: a Built, or a Future of one from a builder process) and send rows
    already claimed; record each outcome. A failure puts what was not recorded back to pending."""
    # Never longer than half the sending timeout: past it another worker could take the
    # batch over while this one still holds outcomes to write.
    record = Recorder(factory, claimed, min(settings.database_outage_wait, settings.sending_timeout / 2), sleep)
    sender = BatchSender(settings, transport, record, claimed, now, report, sleep, on_progress or _no_progress)
    try:
        if built is None:
            built = build_batch(factory, settings, claimed, composer)
        elif not isinstance(built, Built):
            built = built.result()
        sender.run(built)
        record.confirm()  # every outcome is durable before the batch counts as done
        return sender.report
    except Exception as exc:
        # A bug or a lost database must not leave the batch in `sending` until the timeout:
        # what was not recorded goes back to pending, for a later run, and the error goes up.
        log.exception("batch of %d deliveries failed", len(claimed))
        try:
            ledger.release(factory, claimed, f"batch failed: {exc!r}", retry_at=now + FIRST_BACKOFF)
        except Exception:
            log.exception("could not release the batch; the sending timeout will")
        raise
    finally:
        record.close()


def send_batch(
    factory: SessionFactory,
    settings: Settings,
    delivery_ids: Sequence[int],
    transport: Transport | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[..., None] | None = None,
    composer: DigestComposer | None = None,
) -> SendReport:
    """Claim, build and send these deliveries over one connection; record each outcome. A
    configuration fault (ConfigError) is raised before anything is claimed."""
    check_sending(settings)
    now = now or utcnow()
    report = SendReport()
    claimed = ledger.claim(factory, delivery_ids, now, settings.sending_timeout)
    report.not_claimed = len(set(delivery_ids)) - len(claimed)
    if not claimed:
        return report
    options = {"sleep": sleep, "on_progress": on_progress, "composer": composer}
    if transport is None:
        with open_transport(settings) as own:
            return send_claimed(factory, settings, claimed, own, now, report, **options)
    return send_claimed(factory, settings, claimed, transport, now, report, **options)
