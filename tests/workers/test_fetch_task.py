"""The fetch task through a real Celery worker on the real Redis broker."""

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from celery.result import AsyncResult
from sqlalchemy import func, select

from digest.config import SAMPLE_PAPERS
from digest.errors import SourceError
from digest.models import Paper
from tests.celery_worker import running_worker, unique_queue
from tests.factories import hf_item, sample_records
from tests.smtp_server import SmtpTestServer
from tests.stand_ins import HFStandIn, TrickleServer
from tests.workers.test_delivery_tasks import populate, wait_until_final
from workers import app

pytestmark = pytest.mark.integration


def test_the_worker_fetches_into_the_store(cli_env, committed_db, tmp_path):
    from workers.tasks import fetch

    queue = unique_queue()
    env = {**cli_env, "DIGEST_SOURCES": f"file:{SAMPLE_PAPERS}"}
    with running_worker(env, queue, log_path=tmp_path / "worker.log"):
        summary = fetch.apply_async(queue=queue).get(timeout=60)
        again = fetch.apply_async(queue=queue).get(timeout=60)
    assert summary == {"new": 98, "updated": 0, "unchanged": 0, "skipped": 0, "errors": []}
    assert again["new"] == 0 and again["unchanged"] == 98
    with committed_db.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Paper)) == 98


def test_a_failing_source_fails_the_task_loudly(cli_env, committed_db, tmp_path):
    from workers.tasks import fetch

    queue = unique_queue()
    with HFStandIn(sample_records()) as server:
        server.status = 503
        env = {**cli_env, "DIGEST_SOURCES": "hf", "DIGEST_HF_API_URL": server.url, "DIGEST_HTTP_BACKOFF": "0"}
        with running_worker(env, queue, log_path=tmp_path / "worker.log"):
            with pytest.raises(Exception) as error:
                fetch.apply_async(queue=queue).get(timeout=60)
    assert "503" in str(error.value)
    with committed_db.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Paper)) == 0


# Issue 13: fetching must never starve sending.

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def procfile_workers(queue: str) -> dict[str, dict]:
    """Each Celery worker of the Procfile: its queues and concurrency, expanded by the shell as a
    Procfile runner does, with DIGEST_QUEUE set to this test's queue."""
    workers = {}
    for line in PROCFILE.read_text().splitlines():
        name, _, command = line.partition(":")
        if line.startswith("#") or " worker " not in f"{command} ":
            continue
        argv = subprocess.run(
            ["bash", "-c", f'set -- {command}; printf "%s\\n" "$@"'],
            env={"PATH": os.environ["PATH"], "DIGEST_QUEUE": queue}, capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        options = dict(arg.split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
        # Without -Q a worker consumes the default queue, DIGEST_QUEUE.
        queues = argv[argv.index("-Q") + 1] if "-Q" in argv else queue
        workers[name.strip()] = {"queues": queues, "concurrency": int(options["--concurrency"])}
    return workers


def enqueue_as_beat_does(env: dict[str, str], queue: str, task: str) -> AsyncResult:
    """Send a task from a process of its own with the deployment's DIGEST_QUEUE, as `celery beat`
    does, so the app's routing decides the queue (this test process's app has other settings)."""
    sent = subprocess.run(
        [sys.executable, "-c", f"from workers import app; print(app.send_task({task!r}).id)"],
        env={**os.environ, **env, "DIGEST_QUEUE": queue}, capture_output=True, text=True, check=True,
    )
    return AsyncResult(sent.stdout.strip(), app=app)


def test_the_procfile_gives_fetching_a_worker_of_its_own():
    from workers.app import fetch_queue

    workers = procfile_workers("digest")
    assert {w["queues"] for w in workers.values()} == {"digest", fetch_queue("digest")}


@pytest.mark.postgres_only
@pytest.mark.timeout(240)
def test_trickling_fetches_never_keep_digests_from_being_sent(cli_env, committed_db, tmp_path):
    emails = [f"r{n}@example.org" for n in range(3)]
    populate(committed_db, emails)
    queue = unique_queue()
    body = json.dumps([hf_item(r) for r in sample_records()[:20]]).encode()
    with SmtpTestServer() as smtp, TrickleServer(body) as slow:  # a byte a second: a fetch holds its slot
        env = {**cli_env, "DIGEST_SMTP_URL": smtp.url, "DIGEST_FROM": "Papers <digest@papers.test>",
               "DIGEST_SOURCES": "hf", "DIGEST_HF_API_URL": slow.url, "DIGEST_HTTP_ATTEMPTS": "1"}
        with ExitStack() as workers:
            for name, worker in procfile_workers(queue).items():
                workers.enter_context(running_worker(env, worker["queues"], concurrency=worker["concurrency"],
                                                     log_path=tmp_path / f"{name}.log"))
            fetches = [enqueue_as_beat_does(env, queue, "digest.fetch") for _ in range(2)]
            while not slow.requests:  # a fetch is under way
                time.sleep(0.1)
            dispatched = enqueue_as_beat_does(env, queue, "digest.dispatch").get(timeout=60)
            assert dispatched["created"] == 3
            assert wait_until_final(committed_db, 3) == {"sent": 3}
            slow.stopping.set()  # the source goes away: the fetches end, each with its one-line error
            for result in fetches:
                with pytest.raises(SourceError, match="^hf: "):
                    result.get(timeout=60)
    assert smtp.handler.recipients() == {email: 1 for email in emails}


def test_the_fetch_task_has_time_limits_beyond_its_deadlines_that_redelivery_respects():
    from workers.app import fetch_queue, settings
    from workers.tasks import fetch

    assert app.amqp.router.route({}, "digest.fetch")["queue"].name == fetch_queue(settings.queue)
    assert fetch.soft_time_limit > settings.fetch_deadline * len(settings.source_specs)
    assert fetch.soft_time_limit < fetch.time_limit < app.conf.broker_transport_options["visibility_timeout"]
