"""The fetch task through a real Celery worker on the real Redis broker."""

import pytest
from sqlalchemy import func, select

from digest.config import SAMPLE_PAPERS
from digest.models import Paper
from tests.celery_worker import running_worker, unique_queue
from tests.stand_ins import HFStandIn
from tests.factories import sample_records

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
