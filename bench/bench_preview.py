"""Benchmark: the settings page's live preview, whatever the query, and the landing page meanwhile.

Serves a checkout with its own `digest web` (a subprocess) over an edition of 1,000 papers (made
as bench/bench_matching.py makes them; `--papers sample` for the bundled 98), then, in one run:

1. a normal preview (`pretraining` and `diffusion -video`), the issue's worst query (twenty topics
   of two-letter prefixes joined by OR, ~3,900 characters) and a set of heavy queries built to the
   checkout's own limits; the worst one the checkout answers (200) is "the worst allowed";
2. the landing page (`GET /`) idle, then while eight clients flood the worst allowed preview.

Targets (issue 14): the worst allowed preview costs at most 5 times a normal one; the landing
page's 90th percentile under the flood stays within 5 times its idle value. Rate limits are lifted
for the run (previews from many addresses and links), so that every preview is really computed.

    python bench/bench_preview.py [--root CHECKOUT] [--papers 1000|sample] [--clients 8] [--seconds 20]
                                  [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))

from bench_matching import load_sample, make_papers  # noqa: E402

KEY = "bench-preview-secret-key-0123456789abcdef"
NORMAL = "pretraining\ndiffusion -video"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_edition(path: Path, papers: str) -> list[dict]:
    records = load_sample()
    if papers != "sample":
        made = make_papers(records, int(papers), random.Random(7))
        records = [{"id": p.id, "title": p.title, "abstract": p.abstract, "authors": p.authors,
                    "categories": p.categories, "upvotes": p.upvotes, "published_at": p.published_at.isoformat()}
                   for p in made]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def common_prefixes(records: list[dict], length: int = 2) -> list[str]:
    words = Counter(w[:length].lower() for r in records for w in re.findall(r"[A-Za-z]{3,}", r["title"] + " " + r["abstract"]))
    return [prefix for prefix, _ in words.most_common()]


def common_words(records: list[dict]) -> list[str]:
    words = Counter(w.lower() for r in records for w in re.findall(r"[A-Za-z]{5,}", r["abstract"]))
    return [word for word, _ in words.most_common(200)]


def heavy_queries(records: list[dict]) -> dict[str, Callable[[random.Random], str]]:
    """Queries built to be expensive, within 20 topics of 200 characters each. Each call draws a
    new variant, as an attacker would: a process keeps what it evaluated, so repeating one query
    measures a cache, not the work."""
    prefixes, words = common_prefixes(records)[:120], common_words(records)

    def fill(items: list[str], joiner: str, limit: int = 200) -> str:
        text = ""
        for item in items:
            candidate = f"{text}{joiner}{item}" if text else item
            if len(candidate) > limit:
                break
            text = candidate
        return text

    def topics(make) -> Callable[[random.Random], str]:
        return lambda rng: "\n".join(make(rng) for _ in range(20))

    def many(count: int, make) -> Callable[[random.Random], str]:
        return lambda rng: "\n".join(make(rng) for _ in range(count))

    queries = {
        "the issue's worst (20 topics of two-letter prefixes OR-ed)":
            topics(lambda rng: fill([p + "*" for p in rng.sample(prefixes, 60)], " OR ")),
        "20 topics of broad words OR-ed, 200 characters each": topics(lambda rng: fill(rng.sample(words, 60), " OR ")),
        "20 phrases of broad words, 200 characters each": topics(lambda rng: '"' + fill(rng.sample(words, 60), " ", 198) + '"'),
        "20 topics, one prefix each": topics(lambda rng: rng.choice(prefixes) + "*"),
        "20 broad words": topics(lambda rng: rng.choice(words)),
    }
    # Up to 80 words in all (20 topics of 4, 13 of 6, 6 of 12), each way a topic can hold them.
    for n in (4, 6, 12):
        count = min(20, 80 // n)
        for how, joiner, mark in (("OR-ed", " OR ", ""), ("side by side", " ", ""), ("in a phrase", " ", '"')):
            queries[f"{count} topics of {n} broad words {how}"] = many(
                count, lambda rng, n=n, joiner=joiner, mark=mark: mark + joiner.join(rng.sample(words, n)) + mark)
    for n in (2, 4):
        for how, joiner, mark in (("OR-ed", " OR ", ""), ("side by side", " ", ""), ("in a phrase", " ", '"')):
            queries[f"20 topics of {n} prefixes {how}"] = topics(
                lambda rng, n=n, joiner=joiner, mark=mark: mark + joiner.join(p + "*" for p in rng.sample(prefixes, n)) + mark)
    return queries


class Service:
    def __init__(self, root: Path, papers: str, store: str) -> None:
        self.root, self.port = root, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-preview-"))
        self.records = write_edition(self.workdir / "edition.jsonl", papers)
        self.pg_name = f"bench_preview_{os.getpid()}" if store == "postgresql" else None
        if self.pg_name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.pg_name}"')
        database = (f"postgresql://postgres@127.0.0.1:5432/{self.pg_name}" if self.pg_name
                    else f"sqlite:///{self.workdir / 'digest.db'}")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
                    "DIGEST_DATABASE_URL": database, "DIGEST_BASE_URL": self.base,
                    "DIGEST_SECRET_KEY": KEY, "DIGEST_BROKER_URL": "redis://127.0.0.1:1/0",  # counters in memory
                    "DIGEST_SOURCES": f"file:{self.workdir / 'edition.jsonl'}", "DIGEST_OUTBOX_DIR": str(self.workdir / "out"),
                    "DIGEST_SUBSCRIBE_RATE_LIMIT": "100000000", "DIGEST_PREVIEW_RATE_LIMIT": "100000000"}

    def digest(self, *args: str) -> str:
        done = subprocess.run([str(self.root / ".venv" / "bin" / "digest"), *args], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"digest {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def settings_path(self) -> str:
        self.digest("subscribe", "bench@example.org", "--topics", "pretraining", "--confirmed")
        printed = self.digest("preview", "bench@example.org")
        text = self.workdir / next(p for p in re.findall(r"\S+\.txt", printed))
        return re.search(r"/settings/[^\s/?]+", text.read_text()).group(0)

    def drop(self) -> None:
        if self.pg_name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def start(self) -> subprocess.Popen:
        self.digest("db", "upgrade")
        self.digest("fetch")
        process = subprocess.Popen([str(self.root / ".venv" / "bin" / "digest"), "web", "--host", "127.0.0.1",
                                    "--port", str(self.port)], env=self.env, cwd=self.workdir,
                                   stdout=subprocess.DEVNULL, stderr=open(self.workdir / "web.log", "wb"))
        for _ in range(150):
            try:
                httpx.get(self.base + "/healthz", timeout=1)
                return process
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("digest web did not start")


def timed(client: httpx.Client, url: str) -> tuple[float, str]:
    """Milliseconds, and how it was answered: 200, "refused" (the topics break a limit), "cut short"
    (allowed topics whose preview ran out of its budget), or the status code."""
    started = time.perf_counter()
    answer = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code == 422 and "json" in answer.headers.get("content-type", ""):
        return elapsed, "cut short" if answer.json().get("message") else "refused"
    return elapsed, str(answer.status_code)


def preview_url(settings_path: str, topics: str) -> str:
    return f"{settings_path}/preview?topics={quote(topics)}"


def preview_cost(client: httpx.Client, settings_path: str, make, repeat: int, rng: random.Random):
    """Median milliseconds of a preview, a new variant each time; how they were answered, and
    the characters of the last one."""
    runs = []
    for _ in range(repeat):
        topics = make(rng)
        runs.append((*timed(client, preview_url(settings_path, topics)), len(topics)))
    return statistics.median(ms for ms, _, _ in runs), Counter(how for _, how, _ in runs), runs[-1][2]


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def landing_times(base: str, count: int, stop: threading.Event | None = None) -> list[float]:
    with httpx.Client(base_url=base, timeout=120) as client:
        samples = []
        for _ in range(count):
            if stop is not None and stop.is_set():
                break
            samples.append(timed(client, "/")[0])
            time.sleep(0.02)
        return samples


def flood(base: str, settings_path: str, make, seed: int, stop: threading.Event, statuses: Counter) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=120) as client:
        while not stop.is_set():
            statuses[timed(client, preview_url(settings_path, make(rng)))[1]] += 1


def measure(service: Service, settings_path: str, clients: int, seconds: float) -> None:
    rng = random.Random(11)
    normal_query = lambda rng: NORMAL  # noqa: E731 - what a reader types, the same every time
    with httpx.Client(base_url=service.base, timeout=300) as client:
        timed(client, preview_url(settings_path, NORMAL))  # the first preview indexes the edition
        normal, _, _ = preview_cost(client, settings_path, normal_query, 15, rng)
        print(f"normal preview ({NORMAL!r}): {normal:.1f} ms median")
        worst_name, worst_ms, worst_make = "normal", normal, normal_query
        for name, make in heavy_queries(service.records).items():
            ms, answers, characters = preview_cost(client, settings_path, make, 9, rng)
            print(f"  {name} ({characters} characters): {dict(answers)}, {ms:.1f} ms median")
            if answers["refused"] < sum(answers.values()) and ms > worst_ms:  # allowed: answered, even if cut short
                worst_name, worst_ms, worst_make = name, ms, make
    print(f"worst allowed preview: {worst_name}, {worst_ms:.1f} ms = {worst_ms / normal:.1f} x a normal one (target <= 5)")
    idle = landing_times(service.base, 150)
    stop, statuses = threading.Event(), Counter()
    workers = [threading.Thread(target=flood, args=(service.base, settings_path, worst_make, n, stop, statuses))
               for n in range(clients)]
    for worker in workers:
        worker.start()
    time.sleep(1)
    deadline = threading.Timer(seconds, stop.set)
    deadline.start()
    busy = landing_times(service.base, 100_000, stop)
    stop.set()
    for worker in workers:
        worker.join()
    print(f"landing page idle: p90 {p90(idle):.1f} ms (median {statistics.median(idle):.1f}); under {clients} clients "
          f"flooding that preview: p90 {p90(busy):.1f} ms (median {statistics.median(busy):.1f}, max {max(busy):.0f}, "
          f"{len(busy)} requests) = {p90(busy) / p90(idle):.1f} x idle (target <= 5)")
    print(f"flood answers: {dict(statuses)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="the checkout to serve (with its .venv)")
    parser.add_argument("--papers", default="1000", help="papers in the edition, or 'sample' (98)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(args.root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    service = Service(args.root, args.papers, args.store)
    print(f"checkout {args.root} ({commit.stdout.strip()}), {len(service.records)} papers on {args.store}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    process = service.start()
    try:
        measure(service, service.settings_path(), args.clients, args.seconds)
    finally:
        process.terminate()
        process.wait(10)
        service.drop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
