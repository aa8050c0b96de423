"""The SMTP server goes away for a minute in the middle of a send: how long after it came back is
every digest delivered?

    python bench/fault_smtp_outage.py                   # 3,000 subscribers, 2 Celery workers
    python bench/fault_smtp_outage.py --mode send       # the same with `digest send`
    python bench/fault_smtp_outage.py --code /tmp/old   # measure another checkout ("before")

Celery mode emulates beat: `digest.dispatch` at the start and then at every wall-clock multiple
of 5 minutes, as `crontab(minute="*/5")` runs it. Send mode runs `digest send` once and, like
cron, again every 5 minutes while digests are missing. The server is stopped once it has
received --stop-after messages and started again --down seconds later, on the same port.
Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--down", type=float, default=60.0)
    parser.add_argument("--stop-after", type=int, default=500)
    parser.add_argument("--mode", choices=("celery", "send"), default="celery")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--code", help="checkout whose code runs (default: this one)")
    parser.add_argument("--give-up", type=float, default=900.0, help="seconds after the return to stop waiting")
    args = parser.parse_args()
    root = faults.use_code(args.code)
    admin = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    name, url = faults.create_database(admin)
    smtp = faults.StoppableSmtp()
    smtp.start()
    try:
        emails = faults.populate(url, args.n)
        env = {**os.environ, "DIGEST_DATABASE_URL": url, "DIGEST_BROKER_URL": redis_url, "DIGEST_SMTP_URL": smtp.url,
               "DIGEST_FROM": "Papers <digest@papers.test>", "DIGEST_SECRET_KEY": "x" * 40,
               "DIGEST_OUTBOX_DIR": "/tmp/fault-outbox"}
        print(f"code: {root}  mode: {args.mode}  n={args.n}  down={args.down}s  load average: {faults.load_average()}")
        runner = CeleryRun(env, args.workers, root) if args.mode == "celery" else SendRun(env, root)
        try:
            runner.begin()
            faults.wait_for(lambda: smtp.total() >= args.stop_after, 300, 0.02)
            smtp.stop()
            stopped_at = time.monotonic()
            print(f"server stopped after {smtp.total()} messages")
            while time.monotonic() - stopped_at < args.down:
                runner.tick()
                time.sleep(0.5)
            smtp.start()
            back = time.monotonic()
            print(f"server back after {back - stopped_at:.0f} s; {smtp.total()} received so far")
            while len(smtp.received()) < len(emails) and time.monotonic() - back < args.give_up:
                runner.tick()
                time.sleep(0.2)
            done = time.monotonic() - back
            received = smtp.received()
            missing = len(set(emails) - set(received))
            print(f"RESULT: {'done' if not missing else 'NOT done'} {done:.0f} s after the server returned; "
                  f"received {len(received)} of {len(emails)} subscribers, {faults.duplicates(received)} duplicates, "
                  f"{missing} missing; load average: {faults.load_average()}")
        finally:
            runner.end()
    finally:
        try:
            smtp.stop()
        except Exception:
            pass
        faults.drop_database(admin, name)


class CeleryRun:
    def __init__(self, env: dict, workers: int, root: Path) -> None:
        from tests.celery_worker import WorkerProcess, unique_queue

        self.queue = unique_queue()
        self.env = {**env, "DIGEST_QUEUE": self.queue}
        os.environ.update({"DIGEST_BROKER_URL": env["DIGEST_BROKER_URL"], "DIGEST_QUEUE": self.queue})
        self.workers = [WorkerProcess(self.env, self.queue, log_path=Path(f"/tmp/fault-worker-{n}.log"))
                        for n in range(workers)]
        self.last_slot = None

    def begin(self) -> None:
        for worker in self.workers:
            worker.start()
        self.dispatch()
        self.last_slot = int(time.time() // 300)

    def dispatch(self) -> None:
        from workers import app

        app.send_task("digest.dispatch", queue=self.queue)

    def tick(self) -> None:
        slot = int(time.time() // 300)
        if slot != self.last_slot:  # beat's crontab(minute="*/5")
            self.last_slot = slot
            print(f"beat: dispatch at {time.strftime('%H:%M:%S')}")
            self.dispatch()

    def end(self) -> None:
        import redis

        for worker in self.workers:
            worker.stop()
        redis.Redis.from_url(self.env["DIGEST_BROKER_URL"]).delete(self.queue)


class SendRun:
    def __init__(self, env: dict, root: Path) -> None:
        self.env = env
        self.root = root
        self.process = None
        self.started = 0.0

    def begin(self) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "digest.cli", "send"], cwd=self.root, env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def tick(self) -> None:
        if self.process.poll() is not None:
            if not getattr(self.process, "reported", False):
                self.process.reported = True
                tail = self.process.stdout.read().strip().splitlines()[-3:]
                print(f"digest send exited {self.process.returncode}: {' | '.join(tail)}")
            if time.monotonic() - self.started >= 300:  # cron, every 5 minutes
                self.begin()

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        if not getattr(self.process, "reported", False):
            tail = self.process.stdout.read().strip().splitlines()[-3:]
            print(f"digest send exited {self.process.returncode}: {' | '.join(tail)}")


if __name__ == "__main__":
    main()
