"""The Celery app. Settings come from the same DIGEST_* variables as everything else."""

from __future__ import annotations

import sys

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from digest import operations
from digest.config import get_settings
from digest.errors import ConfigError

try:
    settings = get_settings()
except ConfigError as exc:  # celery loads this module to start: one line and a non-zero exit, no traceback
    sys.exit(f"error: {exc}")

# Seconds the fetch task may run beyond its sources' own deadlines (storing, start-up), before the
# soft time limit interrupts it, and then before the hard limit kills the process.
FETCH_STORE_MARGIN = 120
FETCH_KILL_MARGIN = 60
VISIBILITY_TIMEOUT = 2 * 3600


def fetch_queue(queue: str) -> str:
    """Fetching has a queue and a worker of its own (Procfile `fetcher`): a slow or stuck paper
    source can then never hold the slots dispatch and send_batch need."""
    return f"{queue}.fetch"


def fetch_time_limits(fetch_deadline: float, sources: int) -> tuple[float, float]:
    """(soft, hard) time limits of the fetch task: sources are fetched one after the other, each
    within DIGEST_FETCH_DEADLINE, so these fire only if a deadline failed to."""
    soft = fetch_deadline * sources + FETCH_STORE_MARGIN
    return soft, soft + FETCH_KILL_MARGIN


SOFT_LIMIT, HARD_LIMIT = fetch_time_limits(settings.fetch_deadline, len(settings.source_specs))

app = Celery("digest", broker=settings.broker_url, backend=settings.broker_url, include=["workers.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    result_expires=24 * 3600,
    task_default_queue=settings.queue,
    task_routes={"digest.fetch": {"queue": fetch_queue(settings.queue)}},
    task_annotations={"digest.fetch": {"soft_time_limit": SOFT_LIMIT, "time_limit": HARD_LIMIT}},
    # A task is acknowledged when it finishes, not when it starts: a killed worker's task is
    # delivered again (tasks are idempotent through the deliveries ledger).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Longer than any task runs (the fetch task's hard limit included); Redis re-delivers an
    # unacknowledged task after this.
    broker_transport_options={"visibility_timeout": max(VISIBILITY_TIMEOUT, HARD_LIMIT + 600)},
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    beat_schedule={
        # A fetch still queued when the next one is due is superseded by it.
        "fetch-papers": {"task": "digest.fetch", "schedule": crontab(minute="*/30"), "options": {"expires": 29 * 60}},
        "dispatch-digests": {"task": "digest.dispatch", "schedule": crontab(minute="*/5")},
        "process-bounces": {"task": "digest.process_bounces", "schedule": crontab(minute="*/10")},
    },
)


@setup_logging.connect
def _logging(loglevel=None, **_) -> None:
    # Connected, so Celery leaves logging to us: one format (DIGEST_LOG_FORMAT) for every process.
    operations.configure_logging(settings.log_format, loglevel or "INFO")


@worker_process_init.connect
def _count(**_) -> None:
    # In each pool process, after the fork: what it counts goes to the store (DIGEST_METRICS=1).
    operations.count_into_store(settings)


@worker_process_shutdown.connect
def _last_count(**_) -> None:
    operations.stop_counting()
