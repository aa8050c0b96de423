"""Start a real Celery worker process against the test database and the real Redis, on a queue
of this test run's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]


def unique_queue() -> str:
    return f"digest-test-{uuid.uuid4().hex[:10]}"


class WorkerProcess:
    def __init__(self, env: dict[str, str], queue: str, concurrency: int = 1, log_path: Path | None = None) -> None:
        self.env = {**os.environ, **env, "DIGEST_QUEUE": queue, "PYTHONUNBUFFERED": "1"}
        self.queue = queue
        self.concurrency = concurrency
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        name = f"{self.queue}-{uuid.uuid4().hex[:4]}@localhost"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", self.queue, "-n", name,
             f"--concurrency={self.concurrency}", "--loglevel=INFO", "--without-gossip", "--without-mingle"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready(name, timeout)
        return self

    def _wait_ready(self, name: str, timeout: float) -> None:
        from workers import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; log: {self.log_path}")
            replies = app.control.ping(destination=[name], timeout=0.5) or []
            if replies:
                return
        raise RuntimeError(f"worker {name} did not answer a ping within {timeout} s; log: {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole process group: what the OOM killer or a pulled plug does."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def running_worker(env: dict[str, str], queue: str, **options):
    worker = WorkerProcess(env, queue, **options).start()
    try:
        yield worker
    finally:
        worker.stop()
        redis.Redis.from_url(env["DIGEST_BROKER_URL"]).delete(queue)
