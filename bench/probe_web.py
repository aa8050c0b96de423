"""The web's security findings (issue 14), reproduced over HTTP as an outsider would, with figures.

Serves a checkout with its own `digest web` (a subprocess, on SQLite or PostgreSQL), a real SMTP
server that keeps every message, and probes it. Run it on an older checkout and on this one to
compare: it uses only HTTP, SMTP and the tables both have.

    python bench/probe_web.py [--root CHECKOUT] [--store sqlite|postgresql] [--only timing,confirmations,...]

Probes: reuse (a deleted subscriber's links vs the next subscriber), key (the development key with a
public base URL), confirmations (20 concurrent posts for one address, five trials), timing (the
subscribe form's answer for unknown, pending and active addresses: medians and how often one
request tells unknown from active), forwarded (60 posts with forged X-Forwarded-For from loopback,
an 8 KB header's rate-limit key), host (a trailing-slash redirect with a foreign Host header),
ascii (a non-ASCII address), stranger (a stranger re-subscribing a pending and an unsubscribed
address), slow (slow connections that never finish their headers).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import redis
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.web.live import Inbox, free_port, wait_until  # noqa: E402  (an SMTP server that keeps what it got)
KEY = "probe-secret-key-" + "k" * 40
REDIS_DB = "redis://127.0.0.1:6379/13"  # a database of its own: the probe clears its counters there
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Service:
    """`digest web` of one checkout on a fresh store, with papers from the sample."""

    def __init__(self, root: Path, store: str, smtp_port: int, **env) -> None:
        self.root, self.port = root, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="probe-web-"))
        self.database_url = self._database(store)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
            "DIGEST_DATABASE_URL": self.database_url, "DIGEST_BASE_URL": self.base, "DIGEST_SECRET_KEY": KEY,
            "DIGEST_BROKER_URL": REDIS_DB, "DIGEST_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?starttls=off",
            "DIGEST_SOURCES": f"file:{root / 'samples' / 'papers.jsonl'}", "DIGEST_SUBSCRIBE_RATE_LIMIT": "1000000",
            "DIGEST_PREVIEW_RATE_LIMIT": "1000000", **env,
        }
        self.process: subprocess.Popen | None = None

    def _database(self, store: str) -> str:
        if store == "sqlite":
            return f"sqlite:///{self.workdir / 'digest.db'}"
        name = f"probe_web_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.pg_name = name
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    def command(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.root / ".venv" / "bin" / "digest"), *args], env={**self.env, **(env or {})},
                              cwd=self.workdir, capture_output=True, text=True, timeout=120)

    def start(self, env: dict | None = None) -> Service:
        self.command("db", "upgrade")
        self.command("fetch")
        redis.Redis.from_url(REDIS_DB).flushdb()
        self.process = subprocess.Popen(
            [str(self.root / ".venv" / "bin" / "digest"), "web", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**self.env, **(env or {})}, cwd=self.workdir, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "web.log", "wb"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base + "/healthz", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"digest web did not start: {self.log()[-2000:]}")

    def log(self) -> str:
        return (self.workdir / "web.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        if hasattr(self, "pg_name"):
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def sql(self, statement: str, **params):
        url = self.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                return connection.execute(text(statement), params).all()
        finally:
            engine.dispose()


class Browser:
    """One visitor: a cookie jar, the CSRF token of the page it read last."""

    dropped = 0  # answers lost because the server closed the connection (a crash after the answer)

    def __init__(self, base: str, **headers) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30, headers=headers)

    def token(self, path: str = "/") -> str:
        page = self.http.get(path)
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def subscribe(self, email: str, topics: str = "pretraining", token: str | None = None, **headers) -> httpx.Response:
        data = {"csrf_token": token or self.token(), "email": email, "topics": topics}
        try:
            return self.http.post("/subscribe", data=data, headers=headers)
        except httpx.TransportError:  # the connection died under an earlier request's work: again
            Browser.dropped += 1
            return self.http.post("/subscribe", data=data, headers=headers)

    def confirm(self, link: str) -> str:
        """Press the button of a confirmation link; the settings path it leads to."""
        path = re.sub(r"^https?://[^/]+", "", link)
        answer = self.http.post(path, data={"csrf_token": self.token(path)})
        return answer.headers.get("location", "").split("?")[0]


def subscribed_and_confirmed(service: Service, inbox: Inbox, email: str, topics: str = "pretraining") -> str:
    visitor = Browser(service.base)
    visitor.subscribe(email, topics)
    wait_until(lambda: inbox.confirm_links(email))
    return visitor.confirm(inbox.confirm_links(email)[-1])


# ------------------------------------------------------------------ the probes


def probe_reuse(service: Service, inbox: Inbox) -> None:
    first = subscribed_and_confirmed(service, inbox, "first@example.org")
    owner = Browser(service.base)
    deleted = owner.http.post(first + "/delete", data={"csrf_token": owner.token(first), "confirm_delete": "yes"})
    confirm_of_first = inbox.confirm_links("first@example.org")[-1]
    Browser(service.base).subscribe("next@example.org", "agents")
    wait_until(lambda: inbox.confirm_links("next@example.org"))
    old_settings = owner.http.get(first + "/export")
    shows_next = "next@example.org" in old_settings.text
    old_confirm = owner.http.get(re.sub(r"^https?://[^/]+", "", confirm_of_first))
    print(f"reuse: delete answered {deleted.status_code}; the deleted subscriber's export link then answers "
          f"{old_settings.status_code}{' with the NEXT subscriber' + chr(39) + 's address' if shows_next else ''}; "
          f"their confirm link answers {old_confirm.status_code}"
          f"{' naming next@example.org' if 'next@example.org' in old_confirm.text else ''}")


def probe_key(service: Service, inbox: Inbox) -> None:
    for label, value in (("unset", None), ("empty", ""), ("15 bytes", "short-key-12345")):
        env = {k: v for k, v in service.env.items() if k != "DIGEST_SECRET_KEY"}
        if value is not None:
            env["DIGEST_SECRET_KEY"] = value
        env["DIGEST_BASE_URL"] = "https://papers.example.org"
        run = subprocess.run([str(service.root / ".venv" / "bin" / "digest"), "stats"], env=env, cwd=service.workdir,
                             capture_output=True, text=True, timeout=60)
        said = (run.stderr.strip().splitlines() or [""])[-1]
        print(f"key {label} with a public base URL: `digest stats` exit {run.returncode} {said[:110]!r}")


def probe_confirmations(service: Service, inbox: Inbox, trials: int = 5, posts: int = 20) -> None:
    counts, errors = [], []
    for trial in range(trials):
        victim = f"victim{trial}-{uuid.uuid4().hex[:6]}@example.org"
        visitor = Browser(service.base)
        token = visitor.token()
        with ThreadPoolExecutor(posts) as pool:
            codes = list(pool.map(lambda _: visitor.subscribe(victim, token=token).status_code, range(posts)))
        time.sleep(3)  # the emails go out after the answers
        counts.append(len(inbox.to(victim)))
        errors.append(len(codes) - codes.count(303))
    print(f"confirmations: {posts} concurrent posts for one address -> {counts} emails in {trials} trials (answers not 303: {errors})")


def _timed_post(visitor: Browser, token: str, email: str) -> float | None:
    """Milliseconds to the answer; None for an answer other than the usual 303 (a server error)."""
    started = time.perf_counter()
    answer = visitor.subscribe(email, token=token)
    elapsed = time.perf_counter() - started
    return elapsed * 1000 if answer.status_code == 303 else None


def _accuracy(unknown: list[float], active: list[float]) -> float:
    """The best single-threshold classifier, chosen on half the samples, scored on the other half."""
    half = len(unknown) // 2
    train = [(t, 0) for t in unknown[:half]] + [(t, 1) for t in active[:half]]
    test = [(t, 0) for t in unknown[half:]] + [(t, 1) for t in active[half:]]

    def score(rows, threshold, above):
        return sum((t > threshold) == (label == above) for t, label in rows) / len(rows)

    best = max(((t, above) for t, _ in train for above in (0, 1)), key=lambda c: score(train, *c))
    return score(test, *best)


def probe_timing(service: Service, inbox: Inbox, per_class: int = 300) -> None:
    pending = [f"pending{i}@example.org" for i in range(10)]
    active = [f"active{i}@example.org" for i in range(10)]
    for email in pending:
        Browser(service.base).subscribe(email)
    for email in active:
        subscribed_and_confirmed(service, inbox, email)
    visitor = Browser(service.base)
    token = visitor.token()
    plan = [c for c in ("unknown", "pending", "active") for _ in range(per_class)]
    random.Random(1).shuffle(plan)
    times: dict[str, list[float]] = {"unknown": [], "pending": [], "active": []}
    failed = 0
    for n, kind in enumerate(plan):
        email = {"unknown": f"new{n}-{uuid.uuid4().hex[:6]}@example.org", "pending": pending[n % 10],
                 "active": active[n % 10]}[kind]
        elapsed = _timed_post(visitor, token, email)
        if elapsed is None:
            failed += 1
        else:
            times[kind].append(elapsed)
        time.sleep(0.03)  # the work after the answer finishes before the next request
    medians = " / ".join(f"{kind} {statistics.median(t):.1f} ms" for kind, t in times.items())
    print(f"timing ({per_class} posts each): median {medians}; one request tells unknown from active "
          f"{_accuracy(times['unknown'], times['active']):.0%} of the time (50% = chance); {failed} answers not 303")


def probe_forwarded(service: Service, inbox: Inbox) -> None:
    limit = 20
    visitor = Browser(service.base)
    token = visitor.token()
    codes = [visitor.subscribe(f"x{i}@example.org", token=token, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i in range(60)]
    print(f"forwarded: limit {limit}/hour, 60 posts from loopback with forged X-Forwarded-For -> "
          f"{codes.count(303)} accepted, {codes.count(429)} refused (429), {len(codes) - codes.count(303) - codes.count(429)} other")
    visitor.subscribe("long@example.org", token=token, **{"X-Forwarded-For": "a" * 8000})
    keys = redis.Redis.from_url(REDIS_DB).keys("*")
    print(f"forwarded: longest rate-limit key after an 8 KB X-Forwarded-For: {max(map(len, keys), default=0)} bytes")


def probe_host(service: Service, inbox: Inbox) -> None:
    settings_path = subscribed_and_confirmed(service, inbox, "host@example.org")
    answer = httpx.get(service.base + settings_path + "/", headers={"Host": "evil.example"})
    print(f"host: GET {settings_path[:20]}…/ with Host: evil.example -> {answer.status_code} "
          f"Location: {answer.headers.get('location', '-')[:40]}")


def probe_ascii(service: Service, inbox: Inbox) -> None:
    answer = Browser(service.base).subscribe("é@example.org")
    time.sleep(2)
    rows = service.sql("SELECT status FROM subscribers WHERE email = :e", e="é@example.org")
    said = re.search(r"<li>Email address: ([^<]+)</li>", answer.text)
    print(f"ascii: é@example.org -> {answer.status_code} {said.group(1)[:80] if said else ''}; "
          f"rows left: {[r[0] for r in rows]}; emails: {len(inbox.to('é@example.org'))}")


def probe_stranger(service: Service, inbox: Inbox) -> None:
    owner, stranger = Browser(service.base), Browser(service.base)
    owner.subscribe("owner@example.org", "pretraining")
    wait_until(lambda: inbox.confirm_links("owner@example.org"))
    stranger.subscribe("owner@example.org", "something else entirely")
    time.sleep(1)
    page = owner.http.get(re.sub(r"^https?://[^/]+", "", inbox.confirm_links("owner@example.org")[0]))
    shown = re.findall(r"<li><code>([^<]+)</code></li>", page.text)
    print(f"stranger: the owner's own confirm page lists {shown} (owner typed ['pretraining'])")
    settings_path = subscribed_and_confirmed(service, inbox, "left@example.org")
    unsubscribe = owner.http.get(settings_path)
    unsub_path = re.search(r'href="(/unsubscribe/[^"]+)"', unsubscribe.text).group(1)
    owner.http.post(unsub_path, data={"List-Unsubscribe": "One-Click"})
    stranger.subscribe("left@example.org", "something else entirely")
    time.sleep(1)
    print(f"stranger: an unsubscribed owner's settings link after a stranger re-subscribed them -> "
          f"{owner.http.get(settings_path).status_code}")


def probe_slow(service: Service, inbox: Inbox, count: int = 2000, patience: float = 45.0) -> None:
    sockets = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", service.port))
        connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        connection.setblocking(False)
        sockets.append(connection)
    started = time.monotonic()
    open_ = list(sockets)
    while open_ and time.monotonic() - started < patience:
        time.sleep(1)
        for connection in list(open_):
            try:
                connection.send(b"X-a: b\r\n")  # one header line a second: never finished
                if connection.recv(1) == b"":
                    open_.remove(connection)
            except BlockingIOError:
                pass
            except OSError:
                open_.remove(connection)
    held = time.monotonic() - started
    print(f"slow: {count} connections sending one header line a second: {len(open_)} still held after {held:.0f} s")
    for connection in sockets:
        connection.close()


PROBES = {"reuse": probe_reuse, "key": probe_key, "confirmations": probe_confirmations, "timing": probe_timing,
          "forwarded": probe_forwarded, "host": probe_host, "ascii": probe_ascii, "stranger": probe_stranger,
          "slow": probe_slow}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="the checkout to serve (with its .venv)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--only", default=",".join(PROBES), help="comma-separated probes")
    args = parser.parse_args()
    print(f"checkout {args.root} ({subprocess.run(['git', '-C', str(args.root), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}), "
          f"store {args.store}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        for name in args.only.split(","):
            extra = {"DIGEST_SUBSCRIBE_RATE_LIMIT": "20"} if name == "forwarded" else {}
            service = Service(args.root, args.store, smtp.port, **extra)
            try:
                service.start()
                PROBES[name](service, inbox)
            except Exception:
                print(f"{name}: FAILED; the server said:\n{service.log()[-3000:]}")
                raise
            finally:
                service.stop()
    finally:
        smtp.stop()
    if Browser.dropped:
        print(f"connections the server closed without an answer (posts retried): {Browser.dropped}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
