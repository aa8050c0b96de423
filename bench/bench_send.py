"""Delivery benchmark: `digest send` (and 2 Celery workers) against Postfix's smtp-sink, compared
with the machine's limit: the same number of already-built messages over one smtplib connection.

    python bench/bench_send.py                 # 100,000 subscribers, 1,000 papers
    python bench/bench_send.py -n 20000 --skip-celery
    python bench/bench_send.py --marked-share 0     # nobody has marks (learning costs nothing)

It creates a PostgreSQL database of its own (dropped at the end), N subscribers with 1-4 topics
from a realistic vocabulary, one closed edition of 1,000 papers (the bundled sample's texts,
recombined), 20 % of the subscribers (--marked-share) with ~15 "More/Less like this" marks on
5,000 older papers of the store (--store-papers), so that the figures are with learning on;
starts `smtp-sink -u nobody 127.0.0.1:PORT 1000`, and prints the rates, their ratio and the
peak memory of each run. Target: the pipeline at >= 70 % of the limit, under 1 GB. The
limit is measured before and again after the pipelines; ratios are against the higher one.
It also prints a stricter yardstick: the prebuilt messages through digest's own transport, which
pipelines MAIL/RCPT/DATA when the server offers it (smtp-sink does), as `digest send` does.
Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

VOCABULARY = [
    "pretraining", "diffusion", "speech OR audio", "reinforcement learning", "large language model",
    "video generation", "multimodal", "agents", "reasoning", "benchmark", "retrieval augmented",
    "vision transformer", "text-to-image", "robotics", "mixture of experts", "quantization",
    "instruction tuning", "alignment", "RLHF", "chain of thought", "3D", "segmentation",
    "code generation", "math reasoning", "tokenizer", "long context", "efficient inference",
    "distillation", "world model", "embodied", "evaluation", "synthetic data", "hallucination",
    "safety", "LLM", "image editing", "video understanding", "scaling laws", "attention",
    "state space model", "graph neural network", "medical", "protein", "time series",
    "recommendation", "federated learning", "privacy", "speech recognition", "text-to-speech",
    "music generation", "question answering", "summarization", "translation", "compression",
    "pruning", "LoRA", "fine-tuning", "preference optimization", "DPO", "reward model",
    "vision-language", "VLM", "OCR", "document understanding", "autonomous driving", "navigation",
    "pretrained", "self-supervised", "contrastive", "transformer", "GAN", "NeRF",
    "gaussian splatting", "point cloud", "pose estimation", "tracking", "detection",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_papers(count: int, edition, seed: int = 7, prefix: str = "2611") -> list[dict]:
    records = [json.loads(line) for line in (REPO / "samples" / "papers.jsonl").read_text().splitlines() if line]
    rng = random.Random(seed)
    papers = []
    for n in range(count):
        base = records[n % len(records)]
        other = records[rng.randrange(len(records))]
        sentences = (base["abstract"] + " " + other["abstract"]).split(". ")
        rng.shuffle(sentences)
        papers.append({
            "id": f"{prefix}.{n:05d}",
            "title": base["title"] if n < len(records) else f"{base['title'].split(':')[0]}: {other['title']}",
            "abstract": ". ".join(sentences[:8]),
            "authors": base.get("authors", []),
            "categories": base.get("categories", ["cs.LG"]),
            "published_at": datetime(2026, 11, 24, tzinfo=timezone.utc),
            "upvotes": rng.randrange(0, 300),
            "keywords": [],
            "sources": ["file"],
            "edition": edition,
        })
    return papers


def populate(database_url: str, subscribers: int, papers: int, marked_share: float = 0.0,
             store_papers: int = 0) -> None:
    from sqlalchemy import insert

    from digest.db import make_engine, upgrade
    from digest.models import Feedback, Paper, Subscriber, SubscriberStatus, Topic

    engine = make_engine(database_url)
    upgrade(engine)
    now = datetime.now(timezone.utc)
    edition = (now - timedelta(days=1)).date()
    rng = random.Random(11)
    with engine.begin() as connection:
        connection.execute(insert(Paper), make_papers(papers, edition))
        # Older papers of the store, which readers marked in earlier digests (learning on).
        older = make_papers(store_papers, edition - timedelta(days=30), seed=8, prefix="2610") if store_papers else []
        for start in range(0, len(older), 5000):
            connection.execute(insert(Paper), older[start:start + 5000])
        older_ids = [paper["id"] for paper in older]
        chunk = 5000
        for start in range(1, subscribers + 1, chunk):
            ids = range(start, min(start + chunk, subscribers + 1))
            connection.execute(insert(Subscriber), [{
                "id": i, "email": f"reader{i}@bench.example.org", "status": SubscriberStatus.active,
                "timezone": "UTC", "delivery_hour": 7, "frequency": "daily", "weekday": 0, "max_papers": 10,
                "notify_empty": False, "token_version": 1, "created_at": now - timedelta(days=30),
                "confirmed_at": now - timedelta(days=30), "next_due_at": now - timedelta(minutes=1),
            } for i in ids])
            topics = []
            for i in ids:
                for position, query in enumerate(rng.sample(VOCABULARY, rng.randint(1, 4))):
                    topics.append({"subscriber_id": i, "query": query, "position": position})
            connection.execute(insert(Topic), topics)
            marks, versions = [], []
            for i in ids:
                if older_ids and rng.random() < marked_share:
                    count = max(1, min(int(rng.expovariate(1 / 15)) + 1, 100))  # ~15 on average
                    for paper_id in rng.sample(older_ids, min(count, len(older_ids))):
                        marks.append({"subscriber_id": i, "paper_id": paper_id, "liked": rng.random() < 0.6,
                                      "source": "email", "created_at": now - timedelta(days=2)})
                    versions.append(i)
            if marks:
                connection.execute(insert(Feedback), marks)
                connection.execute(
                    Subscriber.__table__.update().where(Subscriber.id.in_(versions)).values(feedback_version=1))
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT setval('subscribers_id_seq', (SELECT max(id) FROM subscribers))")
    if engine.dialect.name == "postgresql":
        # As a running service's tables are: autovacuum would analyze them within a minute of a
        # bulk load, but the benchmark starts at once, and stale statistics (an empty table)
        # make PostgreSQL scan every topic row for each batch. Deliveries stay as on a fresh
        # install: empty (dispatch takes care of its statistics).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE papers, subscribers, topics, feedback")
    engine.dispose()


def reset_deliveries(database_url: str) -> None:
    from sqlalchemy import text

    from digest.db import make_engine

    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM deliveries"))
        connection.execute(text("UPDATE subscribers SET next_due_at = :t"), {"t": datetime.now(timezone.utc) - timedelta(minutes=1)})
    engine.dispose()


def count_sent(database_url: str) -> dict:
    from sqlalchemy import text

    from digest.db import make_engine

    engine = make_engine(database_url)
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all())
    engine.dispose()
    return rows


def sample_messages(database_url: str, env: dict, count: int = 50) -> list[bytes]:
    """Real digests as the pipeline builds them (to an outbox), for the baseline to send."""
    from digest.config import load_settings
    from digest.db import make_engine, session_factory
    from digest.delivery import send_now

    outbox = Path(env["BENCH_TMP"]) / "sample-outbox"
    settings = load_settings(database_url=database_url, outbox_dir=outbox, sender=env["DIGEST_FROM"],
                             base_url=env["DIGEST_BASE_URL"], secret_key=env["DIGEST_SECRET_KEY"])
    engine = make_engine(database_url)
    factory = session_factory(engine)
    for i in range(1, count * 3):
        send_now(factory, settings, email=f"reader{i}@bench.example.org")
        if len(list(outbox.glob("*.eml"))) >= count:
            break
    engine.dispose()
    messages = [p.read_bytes() for p in sorted(outbox.glob("*.eml"))]
    reset_deliveries(database_url)
    return messages


def baseline(port: int, messages: list[bytes], total: int) -> tuple[float, float]:
    """(messages per second, CPU milliseconds per message) of plain smtplib on one connection."""
    connection = smtplib.SMTP("127.0.0.1", port)
    connection.ehlo()
    start, cpu = time.perf_counter(), time.process_time()
    for n in range(total):
        connection.sendmail("digest@bench.example.org", [f"reader{n}@bench.example.org"], messages[n % len(messages)])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    connection.quit()
    return total / elapsed, cpu * 1000 / total


def baseline_transport(port: int, messages: list[bytes], total: int) -> tuple[float, float]:
    """The same prebuilt messages through digest's own SMTP transport (PIPELINING when the server
    offers it, as smtp-sink does): the stricter yardstick, since `digest send` uses it."""
    from digest.config import parse_smtp_url
    from digest.mail import SmtpTransport

    transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}?starttls=off"))
    start, cpu = time.perf_counter(), time.process_time()
    for n in range(total):
        transport.send(messages[n % len(messages)], "digest@bench.example.org", f"reader{n}@bench.example.org")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    transport.close()
    return total / elapsed, cpu * 1000 / total


def pipeline_one_process(env: dict) -> tuple[float, int, float, float]:
    """`digest send` and the builder processes it forks: memory is the peak of their sum
    (ru_maxrss would only give the largest single process), CPU is all of theirs."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen([sys.executable, "-m", "digest.cli", "send"], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, rss_mb(process.pid))
        time.sleep(0.5)
    elapsed = time.perf_counter() - start
    stdout, stderr = process.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(stdout.strip())
    if process.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    sent = count_sent(env["DIGEST_DATABASE_URL"]).get("sent", 0)
    return sent / elapsed, sent, max(peak, after.ru_maxrss / 1024), cpu * 1000 / max(sent, 1)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (a Celery worker forks its pool)."""
    total = 0
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    out += subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout.split()
    for value in out:
        total += int(value)
    return total / 1024


def pipeline_celery(env: dict, subscribers: int, workers: int = 2) -> tuple[float, int, float]:
    import redis

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    worker_env = {**env, "DIGEST_QUEUE": queue}
    processes = []
    for n in range(workers):
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queue, "-n", f"{queue}-{n}@localhost",
             "--pool=solo", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
            cwd=REPO, env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    time.sleep(6)  # workers import and connect
    peak = 0.0
    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from workers.tasks import dispatch; print(dispatch())"],
                       env=worker_env, cwd=REPO, check=True, capture_output=True)
        while True:
            counts = count_sent(env["DIGEST_DATABASE_URL"])
            peak = max(peak, sum(rss_mb(p.pid) for p in processes))
            if sum(counts.get(s, 0) for s in ("sent", "skipped", "failed", "bounced")) >= counts_total(counts):
                if counts_total(counts) and not counts.get("pending") and not counts.get("sending"):
                    break
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(30)
        redis.Redis.from_url(REDIS_URL).delete(queue)
    sent = counts.get("sent", 0)
    return sent / elapsed, sent, peak


def counts_total(counts: dict) -> int:
    return sum(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--subscribers", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--marked-share", type=float, default=0.2,
                        help="share of subscribers with ~15 marks on older store papers (learning on; 0: none)")
    parser.add_argument("--store-papers", type=int, default=5000, help="older papers in the store, to be marked")
    args = parser.parse_args()

    name = f"digest_bench_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    port = free_port()
    tmp = Path(f"/tmp/{name}")
    tmp.mkdir(exist_ok=True)
    sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", f"127.0.0.1:{port}", "1000"])
    env = {
        **os.environ,
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_BROKER_URL": REDIS_URL,
        "DIGEST_SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=off",
        "DIGEST_SMTP_RATE": "1000000",
        "DIGEST_FROM": "Daily Papers <digest@bench.example.org>",
        "DIGEST_BASE_URL": "https://papers.example.org",
        "DIGEST_SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
        "BENCH_TMP": str(tmp),
    }
    try:
        t = time.perf_counter()
        populate(database_url, args.subscribers, args.papers, args.marked_share,
                 args.store_papers if args.marked_share > 0 else 0)
        print(f"populated {args.subscribers} subscribers ({args.marked_share:.0%} with ~15 marks each on "
              f"{args.store_papers if args.marked_share > 0 else 0} older papers), {args.papers} papers in "
              f"{time.perf_counter() - t:.1f} s")
        messages = sample_messages(database_url, env)
        size = sum(map(len, messages)) / len(messages)
        load = os.getloadavg()[0]
        limit, limit_cpu = baseline(port, messages, args.subscribers)
        print(f"limit: {limit:,.0f} messages/s over one smtplib connection ({args.subscribers} prebuilt messages, "
              f"{size / 1024:.1f} KB average; {limit_cpu:.2f} CPU ms/message; load average {load:.1f} "
              f"on {os.cpu_count()} CPUs)")

        strict, strict_cpu = baseline_transport(port, messages, args.subscribers)
        print(f"limit with digest's transport (PIPELINING): {strict:,.0f} messages/s ({strict_cpu:.2f} CPU ms/message)")

        load = os.getloadavg()[0]
        rate, sent, peak, cpu = pipeline_one_process(env)
        print(f"digest send: {rate:,.0f} messages/s, {sent} sent, peak memory {peak:,.0f} MB (with its builders), "
              f"{cpu:.2f} CPU ms/message, load average {load:.1f}->{os.getloadavg()[0]:.1f}")
        rate2 = None
        if not args.skip_celery:
            reset_deliveries(database_url)
            rate2, sent2, peak2 = pipeline_celery(env, args.subscribers)
            print(f"2 Celery workers: {rate2:,.0f} messages/s, {sent2} sent, peak memory {peak2:,.0f} MB (both)")
        # The machine's speed drifts (other tenants): the limit is measured again after the
        # pipelines, and each ratio is taken against the higher of the two, never the lower.
        after, after_cpu = baseline(port, messages, args.subscribers)
        print(f"limit, measured again after the pipelines: {after:,.0f} messages/s ({after_cpu:.2f} CPU ms/message)")
        limit = max(limit, after)
        print(f"ratio, digest send: {rate / limit:.0%} of the limit (wall clock, against the higher limit), "
              f"{rate / strict:.0%} of the stricter one; {limit_cpu / cpu:.0%} by CPU per message")
        if rate2 is not None:
            print(f"ratio, 2 Celery workers: {rate2 / limit:.0%} of the one-connection limit (against the higher limit)")
    finally:
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.keep_db:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
