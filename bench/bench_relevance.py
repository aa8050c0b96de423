"""Quality benchmark (issue 11): do readers who press "More like this" / "Less like this" get more
of the papers they want than their twins who never do? Through the real pipeline:

    python bench/bench_relevance.py                       # the corpus in ../shared/corpus
    python bench/bench_relevance.py --personas other.json # other researchers, graded the same way
    python bench/bench_relevance.py --twins-only          # the keyword-only baseline alone
    python bench/bench_relevance.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The protocol is the corpus's README: a stand-in Hugging Face API (a local HTTP server answering
in the real shape, bench/relevance_stand_in.py) serves one listing day per simulated day; for
each persona a learner and a twin subscribe with the typed topics on the landing page's form
over HTTP and confirm through the link in their confirmation email; each day the papers are
fetched and the edition sent to a real SMTP server (aiosmtpd) this benchmark starts; each digest
is read from that server (its cards in order, the first 10, papers by their arXiv links); the
learner follows each card's "More like this" link (judgment >= 1) or "Less like this" (otherwise)
on the running web app (uvicorn in a thread) and presses the button of the page it opens (a POST
of the page's form with its hidden fields and the CSRF cookie); the twin never gives feedback.
From day 6 on it counts relevant and not-relevant papers among the first 10 cards, per persona and
in total, and checks the target: relevant(learners) >= 1.5 x relevant(twins) at a precision no
lower than the twins'.

Simulated days. A paper's edition is the UTC date it first entered the store, and the delivery
schedule runs on the clock too, so each simulated day is a day of its own after today: day n is
today + n (UTC). The readers subscribe and confirm now, on the wall clock, as people would before
the first morning. Each day then runs the daily job with that day's clock, through the library
functions the commands call, which take the clock as an argument (`now`): the listing day's papers
are fetched from the stand-in with `digest.fetch.fetch_papers(day=LISTING_DAY, now=DAY 12:00 UTC)`
(what `digest fetch` calls), so they join edition DAY as a fetch run on that day would; the next
morning, `digest.delivery.send_now(now=DAY+1 07:30 UTC)` (what `digest send` calls, as cron would
run it) sends whatever is due then: each reader's 07:00 digest of the newest closed edition.
Pressing buttons and the ledger's own stamps stay on the wall clock: no library patches time, and
the product is not changed to be measured.

The database is SQLite in a temporary directory unless --database-url names a PostgreSQL server:
then a database of the benchmark's own is created there and dropped at the end. The corpus is
read where it lies (never copied into the repository). Not a test: it asserts nothing; it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relevance_reader import Reader, ReaderError, forms_of, links_of, read_cards  # noqa: E402
from relevance_stand_in import DailyPapersStandIn  # noqa: E402

MORE, LESS = "More like this", "Less like this"
CARDS = 10  # the protocol counts a digest's first 10 cards
TARGET_RATIO = 1.5


class Stop(Exception):
    """The benchmark cannot go on: one line for the operator."""


# ---------------------------------------------------------------- the corpus


@dataclass
class Persona:
    name: str
    topics: list[str]
    judgments: dict[str, int]


def load_papers(path: Path) -> list[dict]:
    try:
        papers = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise Stop(f"cannot read the papers at {path}: {exc}") from None
    for n, paper in enumerate(papers, 1):
        if not all(paper.get(k) for k in ("id", "title", "date")):
            raise Stop(f"{path}, line {n}: a paper needs id, title and date (YYYY-MM-DD)")
    return papers


def load_personas(path: Path) -> list[Persona]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Stop(f"cannot read the personas at {path}: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise Stop(f"{path}: expected a non-empty JSON array of personas")
    personas = []
    for n, item in enumerate(raw, 1):
        if not isinstance(item, dict) or not isinstance(item.get("typed_topics"), list) \
                or not isinstance(item.get("judgments"), dict):
            raise Stop(f"{path}: persona {n} needs typed_topics (a list) and judgments (paper id -> grade)")
        name = str(item.get("name") or f"persona-{n}")
        if any(p.name == name for p in personas):  # figures are reported by name
            name = f"{name}-{n}"
        personas.append(Persona(name, [str(t) for t in item["typed_topics"]],
                                {str(k): int(v) for k, v in item["judgments"].items()}))
    return personas


def address(persona: Persona, n: int, role: str) -> str:
    local = re.sub(r"[^a-z0-9]+", "-", persona.name.lower()).strip("-")[:40] or "persona"
    return f"{local}-{n}-{role}@bench.example.org"


# ---------------------------------------------------------------- the figures


@dataclass
class Tally:
    relevant: int = 0
    not_relevant: int = 0
    must_read: int = 0  # grade 2, among the relevant
    digests: int = 0
    empty: int = 0  # days with no digest (nothing matched)

    def add(self, grades: list[int]) -> None:
        self.relevant += sum(1 for g in grades if g >= 1)
        self.not_relevant += sum(1 for g in grades if g < 1)
        self.must_read += sum(1 for g in grades if g >= 2)
        self.digests += 1 if grades else 0
        self.empty += 0 if grades else 1

    def merge(self, other: Tally) -> None:
        for name in ("relevant", "not_relevant", "must_read", "digests", "empty"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def precision(self) -> float | None:
        shown = self.relevant + self.not_relevant
        return self.relevant / shown if shown else None


@dataclass
class Subscriber:
    persona: Persona
    role: str  # "learner" or "twin"
    email: str
    reader: Reader
    counted: Tally = field(default_factory=Tally)
    marks: int = 0


def ratio(learners: Tally, twins: Tally) -> float | None:
    return learners.relevant / twins.relevant if twins.relevant else None


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


# ---------------------------------------------------------------- the services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebThread:
    """The app `digest web` serves, under uvicorn with the same limits (digest/web/server.py), in
    a thread of this process."""

    def __init__(self, settings, port: int) -> None:
        import uvicorn

        from digest.web import create_app
        from digest.web.server import server_config

        self.server = uvicorn.Server(server_config(create_app(settings), settings, "127.0.0.1", port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def __enter__(self) -> WebThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise Stop("the web app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Database:
    """SQLite in `tmp`, or a database of our own on the PostgreSQL server of `url`."""

    def __init__(self, url: str | None, tmp: Path, keep: bool) -> None:
        self.admin_url = None
        self.keep = keep
        if not url or url.startswith("sqlite"):
            self.url = url or f"sqlite:///{tmp / 'digest.db'}"
            return
        self.name = f"digest_relevance_{os.getpid()}"
        self.admin_url = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
        self.url = self.admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{self.name}"

    def __enter__(self) -> Database:
        if self.admin_url:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        if self.admin_url and not self.keep:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# ---------------------------------------------------------------- one run


class Run:
    def __init__(self, args, papers: list[dict], personas: list[Persona], settings, factory, smtp, hf) -> None:
        self.args = args
        self.papers = papers
        self.personas = personas
        self.settings = settings
        self.factory = factory
        self.smtp = smtp
        self.hf = hf
        self.subscribers: list[Subscriber] = []
        self.seen = 0  # messages of the SMTP server already read
        self.timings = {"subscribe": 0.0, "fetch": 0.0, "send": 0.0, "feedback": 0.0}
        self.daily: list[dict] = []  # every digest's first cards, for --json

    def new_messages(self) -> dict[str, list]:
        with self.smtp.handler.lock:
            received = self.smtp.handler.received[self.seen :]
            self.seen += len(received)
        mail: dict[str, list] = {}
        for item in received:
            mail.setdefault(item.recipient.lower(), []).append(item.message)
        return mail

    # Subscribing: the landing page's form, then the confirmation email's link and its button.
    def subscribe(self, subscriber: Subscriber) -> None:
        base = self.settings.base_url
        landing = subscriber.reader.open(f"{base}/")
        form = next((f for f in forms_of(landing) if f.action.rstrip("/").endswith("/subscribe")), None)
        if form is None:
            raise Stop("the landing page has no subscribe form")
        subscriber.reader.submit(form, {"email": subscriber.email, "topics": "\n".join(subscriber.persona.topics)})
        confirmation = self.wait_for_mail(subscriber.email, "confirmation email")
        link = next((url for _, url in links_of(confirmation) if "/confirm/" in url), None)
        if link is None:
            raise Stop(f"the confirmation email to {subscriber.email} has no confirm link")
        subscriber.reader.press(link)
        self.check_active(subscriber.email)

    def wait_for_mail(self, email: str, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mail = self.new_messages().get(email)
            if mail:
                return mail[-1]
            time.sleep(0.05)
        raise Stop(f"no {what} reached {email} within {timeout:.0f} s (was the subscribe form refused?)")

    def check_active(self, email: str) -> None:
        from sqlalchemy import select

        from digest.models import Subscriber as Row

        with self.factory() as session:
            row = session.scalar(select(Row).where(Row.email == email))
            status = row.status.value if row is not None else "unknown"
        if status != "active":
            raise Stop(f"{email} is {status} after confirming, not active")

    def run(self) -> dict:
        roles = ("twin",) if self.args.twins_only else ("learner", "twin")
        started = time.perf_counter()
        for n, persona in enumerate(self.personas, 1):
            for role in roles:
                email = address(persona, n, role)
                subscriber = Subscriber(persona, role, email, Reader(email))
                self.subscribers.append(subscriber)
                self.subscribe(subscriber)
        self.timings["subscribe"] = time.perf_counter() - started
        print(f"subscribed {len(self.subscribers)} readers over HTTP (landing form, confirmation link): "
              f"{', '.join(f'{s.persona.name} {s.role}' for s in self.subscribers)}")

        days = sorted(self.hf.days)[: self.args.days]
        first = datetime.now(timezone.utc).date() + timedelta(days=1)
        listed_relevant = {p.name: [0, 0] for p in self.personas}  # counted days: relevant, must-read listed
        for number, day in enumerate(days, 1):
            counted = number >= self.args.count_from
            edition = first + timedelta(days=number - 1)
            new = self.fetch(day, edition)
            sent = self.send(edition)
            mail = self.new_messages()
            line = [f"day {number:2d} {day} (edition {edition}) {new:3d} new, {sent:2d} sent{'' if counted else ', not counted'}"]
            for subscriber in self.subscribers:
                grades, ids = self.read(subscriber, mail.get(subscriber.email, []))
                self.daily.append({"day": number, "listing_day": day, "edition": edition, "persona": subscriber.persona.name,
                                   "role": subscriber.role, "papers": ids, "grades": grades, "counted": counted})
                if counted:
                    subscriber.counted.add(grades)
                rel = sum(1 for g in grades if g >= 1)
                line.append(f"{subscriber.persona.name[:14]}/{subscriber.role[0]} {rel}+{len(grades) - rel}-")
            if counted:
                for persona in self.personas:
                    ids = [p["id"] for p in self.papers if p["date"] == day.isoformat()]
                    listed_relevant[persona.name][0] += sum(1 for i in ids if persona.judgments.get(i, 0) >= 1)
                    listed_relevant[persona.name][1] += sum(1 for i in ids if persona.judgments.get(i, 0) >= 2)
            print("  ".join(line), flush=True)
        elapsed = time.perf_counter() - started
        self.check_marks_stored()
        return self.report(days, listed_relevant, elapsed)

    def check_marks_stored(self) -> None:
        """Each button pressed is one mark in the store (every card is a paper of its own day):
        a page that answered 200 but recorded nothing would otherwise pass for a learner."""
        from sqlalchemy import func, select

        from digest.models import Feedback
        from digest.models import Subscriber as Row

        with self.factory() as session:
            stored = dict(session.execute(select(Row.email, func.count()).join(Feedback, Feedback.subscriber_id == Row.id)
                                          .group_by(Row.email)).all())
        for subscriber in self.subscribers:
            if stored.get(subscriber.email, 0) != subscriber.marks:
                raise Stop(f"{subscriber.email} pressed {subscriber.marks} feedback button(s) but the store holds "
                           f"{stored.get(subscriber.email, 0)} mark(s)")

    def fetch(self, day: date, edition: date) -> int:
        """The listing day `day`'s papers, fetched at noon of simulated day `edition`."""
        from digest.fetch import fetch_papers

        self.hf.today = day
        t = time.perf_counter()
        report = fetch_papers(self.factory, self.settings, day=day, now=datetime.combine(edition, clock(12), timezone.utc))
        self.timings["fetch"] += time.perf_counter() - t
        if not report.ok:
            raise Stop(f"fetch of {day} failed: {report.errors[0]}")
        return report.counts.new

    def send(self, edition: date) -> int:
        """The digests due the morning after `edition` (each reader's 07:00 UTC, the default)."""
        from digest.delivery import send_now

        t = time.perf_counter()
        morning = datetime.combine(edition + timedelta(days=1), clock(7, 30), timezone.utc)
        run = send_now(self.factory, self.settings, now=morning)
        self.timings["send"] += time.perf_counter() - t
        if run.report.errors:
            raise Stop(f"send of edition {edition} failed: {run.report.errors[0]}")
        if run.edition != edition:
            raise Stop(f"the morning after {edition} sent edition {run.edition or 'none'}: the days are not editions")
        return run.report.sent

    def read(self, subscriber: Subscriber, messages: list) -> tuple[list[int], list[str]]:
        """The grades and papers of the first 10 cards of the day's digest; the learner's marks
        given."""
        if len(messages) > 1:
            raise Stop(f"{subscriber.email} got {len(messages)} messages for one edition")
        if not messages:
            return [], []
        cards = read_cards(messages[0])[:CARDS]
        grades = [subscriber.persona.judgments.get(card.paper_id, 0) for card in cards]
        if subscriber.role == "learner":
            t = time.perf_counter()
            for card, grade in zip(cards, grades):
                label = MORE if grade >= 1 else LESS
                url = card.link(label)
                if url is None:
                    raise Stop(f'the digest to {subscriber.email} has no "{label}" link on its card for {card.paper_id} '
                               f"(feedback links not in this build?): nothing to learn from; --twins-only runs the baseline")
                try:
                    subscriber.reader.press(url, label)
                except ReaderError as exc:
                    raise Stop(f"feedback for {card.paper_id}: {exc}") from None
                subscriber.marks += 1
            self.timings["feedback"] += time.perf_counter() - t
        return grades, [card.paper_id for card in cards]

    def report(self, days: list[date], listed: dict, elapsed: float) -> dict:
        counted_days = max(0, len(days) - self.args.count_from + 1)
        print()
        print(f"from day {self.args.count_from} on ({counted_days} editions), first {CARDS} cards of each digest; "
              f"relevant = judgment >= 1 (must-read = 2); pressed = feedback buttons, all days")
        head = f"{'persona':34} {'who':8} {'relevant':>8} {'not rel.':>8} {'precision':>9} {'must-read':>9} {'no digest':>9} {'pressed':>7}"
        print(head)
        figures: dict = {"personas": {}, "days": len(days), "counted_from": self.args.count_from}
        totals = {"learner": Tally(), "twin": Tally()}
        for persona in self.personas:
            mine = {s.role: s for s in self.subscribers if s.persona is persona}
            entry = {"listed_relevant": listed[persona.name][0], "listed_must_read": listed[persona.name][1]}
            for role in ("learner", "twin"):
                s = mine.get(role)
                if s is None:
                    continue
                t = s.counted
                totals[role].merge(t)
                print(f"{persona.name[:34]:34} {role + 's':8} {t.relevant:8d} {t.not_relevant:8d} {fmt(t.precision):>9} "
                      f"{t.must_read:9d} {t.empty:9d} {s.marks:7d}")
                entry[role] = {**vars(t), "precision": t.precision, "marks": s.marks}
            r = ratio(mine["learner"].counted, mine["twin"].counted) if "learner" in mine else None
            entry["ratio"] = r
            print(f"{'':34} {'ratio':8} {fmt(r):>8}   (relevant listed on those days: {listed[persona.name][0]}, "
                  f"must-read {listed[persona.name][1]})")
            figures["personas"][persona.name] = entry
        for role, t in totals.items():
            if t.digests or t.empty:
                print(f"{'total':34} {role + 's':8} {t.relevant:8d} {t.not_relevant:8d} {fmt(t.precision):>9} "
                      f"{t.must_read:9d} {t.empty:9d}")
        learners, twins = totals["learner"], totals["twin"]
        figures["total"] = {role: {**vars(t), "precision": t.precision} for role, t in totals.items()
                            if any(s.role == role for s in self.subscribers)}
        if self.args.twins_only:
            print("target: not checked (--twins-only: the keyword-only baseline alone, no learners)")
            figures["target_met"] = None
        else:
            r = ratio(learners, twins)
            met = (r is not None and r >= TARGET_RATIO and learners.precision is not None
                   and twins.precision is not None and learners.precision >= twins.precision)
            figures["total"]["ratio"], figures["target_met"] = r, met
            print(f"{'total':34} {'ratio':8} {fmt(r):>8}")
            print(f"target (ratio >= {TARGET_RATIO} and learners' precision >= twins'): {'MET' if met else 'NOT MET'} "
                  f"(ratio {fmt(r)}, precision {fmt(learners.precision)} vs {fmt(twins.precision)})")
        t = self.timings
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"run: {elapsed:.1f} s for {len(days)} days x {len(self.subscribers)} readers (subscribe {t['subscribe']:.1f} s, "
              f"fetch {t['fetch']:.1f} s, send {t['send']:.1f} s, feedback {t['feedback']:.1f} s); "
              f"database {self.settings.database_url.split(':', 1)[0]}; load average {load} on {os.cpu_count()} CPUs "
              "(a shared machine: timings are noisy)")
        figures["seconds"] = elapsed
        figures["daily"] = self.daily
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus",
                        help="directory with papers.jsonl and personas.json (default: ../shared/corpus from the repo)")
    parser.add_argument("--papers", type=Path, help="papers file (default: CORPUS/papers.jsonl)")
    parser.add_argument("--personas", type=Path, help="personas file, graded like the corpus's (default: CORPUS/personas.json)")
    parser.add_argument("--database-url", help="sqlite:///PATH, or a PostgreSQL server's URL: a database of the "
                        "benchmark's own is created there and dropped (default: SQLite in a temporary directory)")
    parser.add_argument("--days", type=int, default=None, help="simulate only the first N listing days")
    parser.add_argument("--count-from", type=int, default=6, help="first simulated day counted (default 6)")
    parser.add_argument("--twins-only", action="store_true", help="no learners: the keyword-only baseline alone")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (and PostgreSQL database)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-relevance-"))
    try:
        papers = load_papers(args.papers or args.corpus / "papers.jsonl")
        personas = load_personas(args.personas or args.corpus / "personas.json")
        figures = run(args, papers, personas, tmp)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
    except (Stop, ReaderError) as exc:
        print(f"bench_relevance: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, papers: list[dict], personas: list[Persona], tmp: Path) -> dict:
    from tests.smtp_server import SmtpTestServer

    port = free_port()
    with Database(args.database_url, tmp, args.keep) as database, SmtpTestServer() as smtp, \
            DailyPapersStandIn(papers) as hf:
        environment = {
            "DIGEST_DATABASE_URL": database.url,
            "DIGEST_SMTP_URL": smtp.url,
            "DIGEST_SMTP_RATE": "1000000",
            "DIGEST_BASE_URL": f"http://127.0.0.1:{port}",
            "DIGEST_SECRET_KEY": secrets.token_urlsafe(32),
            "DIGEST_FROM": "Daily Papers <digest@bench.example.org>",
            "DIGEST_SOURCES": "hf",
            "DIGEST_HF_API_URL": hf.url,
            "DIGEST_OUTBOX_DIR": str(tmp / "outbox"),
            # The subscribe form's rate limit counts in this process, not in a Redis shared with
            # other runs: four subscriptions must not meet another run's count.
            "DIGEST_BROKER_URL": "memory://localhost",
            # Every simulated reader presses its buttons from 127.0.0.1, ten a day each, in a few
            # seconds: a person's pace is not what the per-address limit is for here.
            "DIGEST_FEEDBACK_RATE_LIMIT": "100000",
        }
        os.environ.update(environment)  # for anything that reads the settings itself
        from digest.config import load_settings
        from digest.db import make_engine, session_factory, upgrade

        settings = load_settings()
        engine = make_engine(settings.database_url)
        upgrade(engine)
        try:
            with WebThread(settings, port):
                return Run(args, papers, personas, settings, session_factory(engine), smtp, hf).run()
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
