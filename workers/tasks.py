"""Celery tasks: each parses its arguments, calls one function of digest/, returns a summary."""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded

from digest.bounces import process_mailbox
from digest.config import get_settings
from digest.db import ensure_schema, get_engine, session_factory
from digest.delivery import dispatch as dispatch_due
from digest.delivery import send_batch as send
from digest.errors import SourceError
from digest.fetch import fetch_papers
from workers.app import app

log = logging.getLogger(__name__)

SEND_RETRIES = 12  # a send_batch task retried after an SMTP outage (each after the outage wait)


def _sessions():
    settings = get_settings()
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    return settings, session_factory(engine)


@app.task(name="digest.fetch")  # its own queue and time limits: workers/app.py
def fetch() -> dict:
    """Fetch every configured source. Sources retry their own transient errors; a source that
    still fails makes the task fail (visible in monitoring) after the others were stored."""
    settings, factory = _sessions()
    report = fetch_papers(factory, settings, passthrough=(SoftTimeLimitExceeded,))
    summary = {
        "new": report.counts.new,
        "updated": report.counts.updated,
        "unchanged": report.counts.unchanged,
        "skipped": report.counts.skipped,
        "errors": report.errors,
    }
    log.info("fetch: %s", report.summary())
    if report.errors:
        raise SourceError("; ".join(report.errors))
    return summary


@app.task(name="digest.dispatch")
def dispatch() -> dict:
    """Beat, every 5 minutes: create the due deliveries and enqueue send_batch tasks for them.
    A broker that refuses the enqueue makes this task fail loudly; the rows stay pending and
    the next run enqueues them."""
    settings, factory = _sessions()
    report = dispatch_due(factory, settings, lambda ids: send_batch.apply_async(args=[ids], retry=False))
    return {"edition": str(report.edition), "due": report.due, "created": report.created,
            "requeued": report.requeued, "enqueued": report.enqueued}


@app.task(name="digest.send_batch", bind=True, max_retries=SEND_RETRIES)
def send_batch(self, delivery_ids: list[int]) -> dict:
    """Build and send about 100 digests over one SMTP connection. Safe to run twice: rows are
    claimed with a conditional UPDATE, so a redelivered task sends only what is still pending."""
    settings, factory = _sessions()
    report = send(factory, settings, [int(i) for i in delivery_ids])
    log.info("send_batch: %s", report.summary())
    if report.errors:
        failure = RuntimeError("; ".join(report.errors))
        if report.retry_after is not None and self.request.retries < SEND_RETRIES:
            # The server stayed unreachable for DIGEST_SMTP_OUTAGE_WAIT: try again soon (the rows
            # are pending; after the last retry the next dispatch takes them at their back-off).
            raise self.retry(countdown=report.retry_after, exc=failure)
        raise failure
    return {"sent": report.sent, "skipped": report.skipped, "failed": report.failed,
            "bounced": report.bounced, "suppressed": report.suppressed, "retrying": report.retrying,
            "not_claimed": report.not_claimed}


@app.task(name="digest.process_bounces")
def process_bounces() -> dict:
    """Read delivery status notifications from DIGEST_BOUNCE_IMAP_URL and suppress failed addresses."""
    settings, factory = _sessions()
    if not settings.bounce_imap_url:
        return {"skipped": "DIGEST_BOUNCE_IMAP_URL is not set"}
    return process_mailbox(factory, settings).as_dict()
