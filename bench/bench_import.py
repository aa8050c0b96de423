"""`digest import` speed: N new subscribers (default 100,000) from a CSV file, on PostgreSQL and on
SQLite, with `--confirmed` and with double opt-in (a confirmation email each, written to an outbox
folder: the SMTP path is paced by DIGEST_SMTP_RATE, not by the import). Prints rows per second and
the peak memory of the importing process. Target: >= 5,000 rows/s on PostgreSQL, >= 2,000 on SQLite.

    python bench/bench_import.py
    python bench/bench_import.py -n 10000 --code /tmp/old    # another checkout ("before")

Each import runs in a process of its own (so its peak memory is its own), on a fresh database.
The file is realistic: 1-4 topics from the delivery benchmark's vocabulary, a third with a time
zone and an hour, a header line. Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults  # noqa: E402

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"]

CHILD = r"""
import inspect, io, json, resource, sys, time
import digest
print("code:", digest.__file__, file=sys.stderr)
from digest.config import load_settings
from digest.db import make_engine, session_factory, upgrade
from digest.subscriptions import import_csv
url, path, confirmed, outbox = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
settings = load_settings(database_url=url, outbox_dir=outbox, secret_key="x" * 40)
engine = make_engine(settings.database_url)
upgrade(engine)
factory = session_factory(engine)
started = time.perf_counter()
if "factory" in inspect.signature(import_csv).parameters:
    report = import_csv(factory, path, settings, confirmed=confirmed)
else:  # an older checkout: one session, one transaction for the whole file
    with factory() as session, session.begin():
        report = import_csv(session, path, settings, confirmed=confirmed)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "added": report.added, "errors": len(report.errors),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_file(path: Path, count: int, seed: int = 11) -> None:
    sys.path.insert(0, str(faults.HERE / "bench"))
    from bench_send import VOCABULARY

    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        out.write("email,topics,timezone,hour\n")
        for n in range(count):
            topics = "; ".join(rng.sample(VOCABULARY, rng.randint(1, 4))).replace(",", " ")
            if n % 3 == 0:
                out.write(f"person{n:06d}@example.org,{topics},{rng.choice(ZONES)},{rng.randint(5, 9)}\n")
            else:
                out.write(f"person{n:06d}@example.org,{topics}\n")


def run_one(root: Path, url: str, path: Path, confirmed: bool, outbox: Path) -> dict:
    # cwd: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH.
    done = subprocess.run([sys.executable, "-c", CHILD, url, str(path), "1" if confirmed else "0", str(outbox)],
                          capture_output=True, text=True, timeout=7200, cwd=root)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--code", help="checkout whose code runs (default: this one)")
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument("--modes", default="confirmed,double-opt-in")
    args = parser.parse_args()
    root = faults.use_code(args.code)
    admin = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    print(f"code: {root}  rows: {args.n:,}  load average: {faults.load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="digest-import-") as folder:
        source = Path(folder) / "people.csv"
        make_file(source, args.n)
        for store in args.stores.split(","):
            for mode in args.modes.split(","):
                outbox = Path(folder) / f"outbox-{store}-{mode}"
                name = None
                if store == "postgresql":
                    name, url = faults.create_database(admin)
                else:
                    url = f"sqlite:///{Path(folder) / f'{mode}.db'}"
                try:
                    result = run_one(root, url, source, mode == "confirmed", outbox)
                finally:
                    if name:
                        faults.drop_database(admin, name)
                rate = result["added"] / result["seconds"] if result["seconds"] else 0
                print(f"{store:10s} {mode:13s} {result['added']:>7,} new in {result['seconds']:7.1f} s = "
                      f"{rate:8,.0f} rows/s, peak {result['peak_mb']:6.0f} MB, {result['errors']} bad; "
                      f"load average: {faults.load_average()}", flush=True)


if __name__ == "__main__":
    main()
