"""The Celery app. Settings come from the same DIGEST_* variables as everything else."""

from __future__ import annotations

import sys

from celery import Celery
from celery.schedules import crontab

from digest.config import get_settings
from digest.errors import ConfigError

try:
    settings = get_settings()
except ConfigError as exc:  # celery loads this module to start: one line and a non-zero exit, no traceback
    sys.exit(f"error: {exc}")

app = Celery("digest", broker=settings.broker_url, backend=settings.broker_url, include=["workers.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    result_expires=24 * 3600,
    task_default_queue=settings.queue,
    # A task is acknowledged when it finishes, not when it starts: a killed worker's task is
    # delivered again (tasks are idempotent through the deliveries ledger).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Longer than any task runs; Redis re-delivers an unacknowledged task after this.
    broker_transport_options={"visibility_timeout": 2 * 3600},
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    beat_schedule={
        "fetch-papers": {"task": "digest.fetch", "schedule": crontab(minute="*/30")},
        "dispatch-digests": {"task": "digest.dispatch", "schedule": crontab(minute="*/5")},
        "process-bounces": {"task": "digest.process_bounces", "schedule": crontab(minute="*/10")},
    },
)
