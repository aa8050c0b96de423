"""The embedded SQLite under concurrency, as an operator meets it: `digest web` and `digest send`
together, bursts of subscribe posts, two `digest send` at once. Prints what answered and what
was sent; asserts nothing (tests/cli/test_sqlite_concurrency.py asserts the same cases).

    python bench/fault_sqlite_concurrency.py
    python bench/fault_sqlite_concurrency.py --code /tmp/old   # another checkout ("before")
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults  # noqa: E402


def _processes():
    # By path: a checkout measured "before" may not have it.
    spec = importlib.util.spec_from_file_location("sqlite_processes", faults.HERE / "tests/cli/sqlite_processes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locked_lines(*logs: Path) -> int:
    return sum(path.read_text(errors="replace").count("database is locked") for path in logs if path.exists())


def web_and_send(proc, folder: Path) -> None:
    from tests.smtp_server import SmtpTestServer

    url = f"sqlite:///{folder / 'digest.db'}"
    proc.populate_sqlite(url, 3000)
    with SmtpTestServer() as smtp:
        answers, send, output = proc.posts_during_a_send(url, folder, smtp, [f"new{n}@example.org" for n in range(20)])
        codes = Counter(answers)
        (folder / "send.log").write_text(output)
        stored = proc.subscribers_in(url, [f"new{n}@example.org" for n in range(20)])
        print(f"RESULT web+send: posts answered {dict(codes)} of 20, {stored} stored; digest send exited "
              f"{send.returncode}, sent {proc.sent_count(output)} of 3000; server received "
              f"{len(smtp.handler.recipients())} addresses; 'database is locked' x{locked_lines(folder / 'web.log', folder / 'send.log')}")


def bursts(proc, folder: Path) -> None:
    url = f"sqlite:///{folder / 'digest.db'}"
    proc.populate_sqlite(url, 10)
    web = proc.Web(proc.environment(url, folder / "outbox"), folder, folder / "web.log")
    try:
        emails = [f"burst{n}@example.org" for n in range(60)]
        answers = Counter()
        for start in (0, 20, 40):
            answers += proc.burst(web.url, emails[start:start + 20])
    finally:
        web.stop()
    print(f"RESULT bursts: answers {dict(answers)} of 60, {proc.subscribers_in(url, emails)} stored, "
          f"{len(list((folder / 'outbox').glob('burst*.eml')))} confirmations; "
          f"'database is locked' x{locked_lines(folder / 'web.log')}")


def two_sends(proc, folder: Path) -> None:
    from tests.smtp_server import SmtpTestServer

    url = f"sqlite:///{folder / 'digest.db'}"
    proc.populate_sqlite(url, 3000)
    with SmtpTestServer() as smtp:
        env = proc.environment(url, folder / "outbox", smtp.url)
        sends = [proc.start_send(env, folder), proc.start_send(env, folder)]
        outputs = [s.communicate(timeout=600)[0] for s in sends]
        received = smtp.handler.recipients()
    print(f"RESULT two sends: exit codes {[s.returncode for s in sends]}, sent {[proc.sent_count(o) for o in outputs]}; "
          f"server received {len(received)} of 3000 addresses, {faults.duplicates(received)} duplicates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", help="checkout whose code runs (default: this one)")
    args = parser.parse_args()
    root = faults.use_code(args.code)
    proc = _processes()
    print(f"code: {root}  load average: {faults.load_average()}", flush=True)
    for scenario in (web_and_send, bursts, two_sends):
        with tempfile.TemporaryDirectory(prefix="digest-sqlite-") as folder:
            scenario(proc, Path(folder))
        print(f"  (load average: {faults.load_average()})", flush=True)


if __name__ == "__main__":
    main()
