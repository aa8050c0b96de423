"""What the fault experiments of docs/delivery.md share: the code under test (this tree, or
another checkout given with --code, to measure "before"), a PostgreSQL database of their own, a
store of N due subscribers and one closed edition, an aiosmtpd server that can be stopped and
started again on the same port, and the count of what it received.

Not a test: the experiments print what they measured (bench/fault_*.py).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def use_code(code: str | None) -> Path:
    """Put the checkout to measure first on sys.path (and in PYTHONPATH for the subprocesses)."""
    root = Path(code).resolve() if code else HERE
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return root


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def create_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"digest_fault_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def populate(url: str, count: int, topics=("pretraining OR model OR language OR learning",)) -> list[str]:
    """N active subscribers due now, and the bundled sample as yesterday's (closed) edition."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from digest.db import make_engine, upgrade
    from digest.models import Subscriber, Topic
    from tests.delivery.helpers import add_sample_papers

    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(timezone.utc)
    emails = [f"reader{n:05d}@example.org" for n in range(count)]
    with Session(engine) as session:
        add_sample_papers(session, (now - timedelta(days=1)).date())
        ids = session.scalars(insert(Subscriber).returning(Subscriber.id), [
            {"email": e, "status": "active", "confirmed_at": now - timedelta(days=30),
             "next_due_at": now - timedelta(minutes=1), "created_at": now - timedelta(days=30)} for e in emails
        ]).all()
        session.execute(insert(Topic), [{"subscriber_id": i, "query": q, "position": p}
                                        for i in ids for p, q in enumerate(topics)])
        session.commit()
    engine.dispose()
    return emails


class StoppableSmtp:
    """The tests' aiosmtpd server on a fixed port, stopped and started again at will."""

    def __init__(self) -> None:
        from tests.smtp_server import FaultyHandler, _FreePortController

        self.handler = FaultyHandler()
        self._controller_class = _FreePortController
        self.port = 0
        self.controller = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        if self.port:
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        else:
            self.controller = self._controller_class(self.handler, hostname="127.0.0.1", port=0)
        self.controller.start()
        self.port = self.controller.port

    def stop(self) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off"

    def received(self) -> Counter:
        return self.handler.recipients()

    def total(self) -> int:
        return sum(self.received().values())


def wait_for(predicate, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def duplicates(received: Counter) -> int:
    return sum(n - 1 for n in received.values() if n > 1)
