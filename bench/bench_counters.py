"""What counting costs the sending loop: the two calls made per message (`delivery_outcome` and
`smtp_exchange`, with its two clock reads), timed over a million messages, beside the ~1 ms a
message takes in `digest send` (bench/bench_send.py). Not a test: nothing here asserts on time.

    python bench/bench_counters.py [-n 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest import counters  # noqa: E402 - after the path is set


def per_message(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        exchange_started = time.perf_counter()
        counters.smtp_exchange(250, time.perf_counter() - exchange_started)
        counters.delivery_outcome("sent")
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    for run in (1, 2):
        seconds = per_message(args.messages)
        load = os.getloadavg()[0]
        print(f"run {run}: {seconds * 1e6:.2f} µs per message for both hooks ({args.messages:,} messages; "
              f"{seconds * 1000 / 1.0 * 100:.2f} % of a 1 ms message; load average {load:.1f} on {os.cpu_count()} CPUs)")
    started = time.perf_counter()
    samples = len(counters.snapshot())
    print(f"one hand-off snapshot: {(time.perf_counter() - started) * 1000:.2f} ms for {samples} samples "
          "(every DIGEST_METRICS_FLUSH_INTERVAL seconds, in its own thread)")


if __name__ == "__main__":
    main()
