"""The Celery app. Settings come from the same DIGEST_* variables as everything else."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from digest import operations
from digest.config import get_settings

settings = get_settings()

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
