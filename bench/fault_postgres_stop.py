"""PostgreSQL stopped (fast or immediate) during a send of 3,000 on 2 Celery workers, started again
a few seconds later: how many subscribers are lost, how many get their digest twice?

    python bench/fault_postgres_stop.py --mode fast
    python bench/fault_postgres_stop.py --mode immediate --code /tmp/old   # another checkout

It runs a PostgreSQL server of its own (initdb into a temporary folder, as the postgres user when
run as root), so the machine's shared server is not disturbed. DIGEST_SENDING_TIMEOUT is 30 s so
that rows a dead batch left in `sending` come back within the experiment; dispatch runs every 5 s
after the restart. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults  # noqa: E402

FINAL = {"sent", "bounced", "failed", "skipped"}


def _pg_instance_module():
    # By path: a checkout measured "before" may not have it.
    spec = importlib.util.spec_from_file_location("pg_instance", faults.HERE / "tests" / "pg_instance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--mode", choices=("fast", "immediate"), default="fast")
    parser.add_argument("--down", type=float, default=5.0)
    parser.add_argument("--stop-after", type=int, default=600)
    parser.add_argument("--code", help="checkout whose code runs (default: this one)")
    args = parser.parse_args()
    root = faults.use_code(args.code)
    instance = _pg_instance_module().PostgresInstance().init()
    smtp = faults.StoppableSmtp()
    smtp.start()
    workers = []
    try:
        url = instance.create_database(f"digest_{uuid.uuid4().hex[:8]}")
        emails = faults.populate(url, args.n)
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from digest.db import make_engine
        from digest.models import Delivery
        from tests.celery_worker import WorkerProcess, unique_queue

        queue = unique_queue()
        env = {"DIGEST_DATABASE_URL": url, "DIGEST_BROKER_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
               "DIGEST_SMTP_URL": smtp.url, "DIGEST_FROM": "Papers <digest@papers.test>",
               "DIGEST_SECRET_KEY": "x" * 40, "DIGEST_SENDING_TIMEOUT": "30"}
        os.environ.update({"DIGEST_BROKER_URL": env["DIGEST_BROKER_URL"], "DIGEST_QUEUE": queue})
        print(f"code: {root}  stop: {args.mode}  n={args.n}  load average: {faults.load_average()}", flush=True)
        workers = [WorkerProcess(env, queue, log_path=Path(f"/tmp/fault-pg-worker-{n}.log")).start() for n in range(2)]
        from workers import app

        app.send_task("digest.dispatch", queue=queue).get(timeout=120)
        faults.wait_for(lambda: smtp.total() >= args.stop_after, 300, 0.01)
        instance.stop(args.mode)
        print(f"PostgreSQL stopped ({args.mode}) after {smtp.total()} messages", flush=True)
        time.sleep(args.down)
        instance.start()
        instance.wait_ready()
        engine = make_engine(url)

        def statuses() -> Counter:
            with Session(engine) as session:
                return Counter(s.value for s in session.scalars(select(Delivery.status)))

        deadline = time.monotonic() + 600
        while sum(statuses()[s] for s in FINAL) < len(emails) and time.monotonic() < deadline:
            try:
                app.send_task("digest.dispatch", queue=queue).get(timeout=120)
            except Exception:
                pass
            time.sleep(5)
        received = smtp.received()
        twice = sorted(e for e, n in received.items() if n > 1)
        if twice:
            from digest.models import Subscriber

            with Session(engine) as session:
                rows = session.execute(select(Subscriber.email, Delivery.id, Delivery.attempts, Delivery.claimed_at,
                                              Delivery.sent_at).join(Delivery, Delivery.subscriber_id == Subscriber.id)
                                       .where(Subscriber.email.in_(twice[:10]))).all()
            print("twice:", [tuple(str(v) for v in row) for row in rows], flush=True)
        print(f"RESULT: stop {args.mode}: received {len(received)} of {len(emails)} subscribers, "
              f"{faults.duplicates(received)} duplicates, {len(set(emails) - set(received))} missing; "
              f"rows {dict(statuses())}; load average: {faults.load_average()}", flush=True)
        engine.dispose()
    finally:
        for worker in workers:
            worker.stop()
        smtp.stop()
        instance.destroy()


if __name__ == "__main__":
    main()
