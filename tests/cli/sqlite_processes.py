"""The embedded setup as an operator runs it: a SQLite file, `digest web` (uvicorn) and `digest
send` as separate processes. Shared by tests/cli/test_sqlite_concurrency.py (which asserts) and
bench/fault_sqlite_concurrency.py (which prints the same figures, also for an older checkout)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def populate_sqlite(url: str, count: int) -> None:
    """`count` active subscribers due now and the bundled sample as yesterday's edition."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from digest.db import make_engine, upgrade
    from digest.models import Subscriber, Topic
    from tests.delivery.helpers import add_sample_papers

    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        add_sample_papers(session, (now - timedelta(days=1)).date())
        ids = session.scalars(insert(Subscriber).returning(Subscriber.id), [
            {"email": f"reader{n:05d}@example.org", "status": "active", "confirmed_at": now - timedelta(days=30),
             "next_due_at": now - timedelta(minutes=1), "created_at": now - timedelta(days=30)}
            for n in range(count)
        ]).all()
        session.execute(insert(Topic), [{"subscriber_id": i, "query": "pretraining OR model", "position": 0}
                                        for i in ids])
        session.commit()
    engine.dispose()


def environment(url: str, outbox: Path, smtp_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DIGEST_DATABASE_URL": url, "DIGEST_OUTBOX_DIR": str(outbox),
           "DIGEST_SECRET_KEY": "x" * 40, "DIGEST_BASE_URL": "http://127.0.0.1",
           "DIGEST_BROKER_URL": "redis://127.0.0.1:1/0",  # no Redis: the web counts rate limits itself
           "DIGEST_SUBSCRIBE_RATE_LIMIT": "100000", "DIGEST_SMTP_RATE": "2000", **extra}
    if smtp_url:
        env["DIGEST_SMTP_URL"] = smtp_url
    return env


class Web:
    """`digest web` on a free port."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.port = free_port()
        self.log = open(log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "digest.cli", "web", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait()

    def _wait(self) -> None:
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"digest web exited with {self.process.returncode}")
            try:
                httpx.get(self.url + "/", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("digest web did not answer")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def subscribe(base_url: str, email: str) -> int:
    """A subscribe form posted as a browser posts it (CSRF cookie and token from the landing page);
    the status code of the answer, or 0 when there was none."""
    import httpx

    try:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            page = client.get("/")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            answer = client.post("/subscribe", data={"email": email, "topics": "diffusion; agents",
                                                      "csrf_token": token})
            return answer.status_code
    except httpx.HTTPError:
        return 0


def burst(base_url: str, emails: list[str]) -> Counter:
    """All these posts at once, each from its own thread."""
    codes: list[int] = []
    threads = [threading.Thread(target=lambda e=e: codes.append(subscribe(base_url, e))) for e in emails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return Counter(codes)


def start_send(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digest.cli", "send"], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def sent_count(output: str) -> int:
    found = re.search(r"sent: (\d+)", output)
    return int(found.group(1)) if found else 0


def subscribers_in(url: str, emails: list[str]) -> int:
    from sqlalchemy import create_engine, func, select

    from digest.models import Subscriber

    engine = create_engine(url)
    with engine.connect() as connection:
        found = connection.scalar(select(func.count()).select_from(Subscriber).where(Subscriber.email.in_(emails)))
    engine.dispose()
    return found


def posts_during_a_send(url: str, folder: Path, smtp, emails: list[str]) -> tuple[list[int], subprocess.Popen, str]:
    """`digest web` and `digest send` on one SQLite file: once the send is under way, one
    subscribe post every 0.1 s. The answers' status codes, the finished send and its output."""
    env = environment(url, folder / "outbox", smtp.url)
    web = Web(env, folder, folder / "web.log")
    try:
        send = start_send(env, folder)
        while len(smtp.handler.received) < 50 and send.poll() is None:
            time.sleep(0.05)
        codes = []
        for email in emails:
            codes.append(subscribe(web.url, email))
            time.sleep(0.1)
        output = send.communicate(timeout=600)[0]
    finally:
        web.stop()
    return codes, send, output
