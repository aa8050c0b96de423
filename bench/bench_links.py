"""The three signed links of every digest (settings, unsubscribe, view), per message, on one core.

Delivery signs them for each subscriber (digest/mail/links.py over digest/tokens.py); this times
exactly that and nothing else, in CPU time of this thread, best and median of five rounds.

    python bench/bench_links.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.config import load_settings  # noqa: E402
from digest.mail import settings_url, unsubscribe_url, view_url  # noqa: E402

EDITION = date(2026, 11, 26)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    settings = load_settings(base_url="https://digest.example.org", secret_key="bench-links-secret-key-0123456789abcdef")
    # Rows as delivery reads them; token_version for checkouts whose links carried it instead.
    recipients = [SimpleNamespace(id=n, token_version=1, link_secret=secrets.token_hex(8))
                  for n in range(1, args.messages + 1)]
    rounds = []
    for _ in range(5):
        started = time.thread_time_ns()
        for recipient in recipients:
            settings_url(recipient, settings)
            unsubscribe_url(recipient, settings)
            view_url(recipient, EDITION, settings)
        rounds.append((time.thread_time_ns() - started) / args.messages / 1000)
    link = settings_url(recipients[-1], settings)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; a settings link is {len(link)} characters")
    print(f"three signed links per message: best {min(rounds):.1f} us, median {statistics.median(rounds):.1f} us CPU")


if __name__ == "__main__":
    main()
