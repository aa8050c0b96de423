"""Fetch every configured source and store what each returned.

Each source is all or nothing: its papers are stored in one transaction after the whole answer
was read, so a source that fails half-way leaves the store as it was. A failing source does not
stop the others, whatever it raised; the run reports it and ends non-zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session

from digest import counters
from digest.config import SAMPLE_PAPERS, Settings, SourceSpec
from digest.errors import SourceError
from digest.ingest import IngestCounts, store_fetch
from digest.models import FetchRun, Paper
from digest.sources import FetchResult, make_source

log = logging.getLogger(__name__)


@dataclass
class FetchReport:
    counts: IngestCounts = field(default_factory=IngestCounts)
    per_source: dict[str, IngestCounts] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, other: FetchReport) -> None:
        """Fold in the report of another fetch (one source at a time, as `digest fetch` goes)."""
        self.counts.add(other.counts)
        self.per_source.update(other.per_source)
        self.errors.extend(other.errors)
        self.notes.extend(other.notes)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        c = self.counts
        return f"{c.new} new, {c.updated} updated, {c.unchanged} unchanged, {c.skipped} skipped"


def http_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(settings.http_timeout, connect=min(10.0, settings.http_timeout)),
        headers={"User-Agent": "daily-papers-digest/0.1 (self-hosted paper digest)"},
        follow_redirects=True,
        # A new connection per request, so the deadline's watchdog always knows the socket to shut
        # (sources/http.py); a fetch makes a few requests, seconds apart: reuse would save nothing.
        limits=httpx.Limits(max_keepalive_connections=0),
        transport=transport,
    )


def fetch_one(spec: SourceSpec, settings: Settings, client: httpx.Client, day: date,
              passthrough: tuple[type[BaseException], ...] = ()) -> FetchResult:
    """One source's whole answer; SourceError (one line) for anything that went wrong in it, a
    bug included: one source's failure must not cost the others their papers."""
    try:
        return make_source(spec, settings, client).fetch(day)
    except (SourceError, *passthrough):
        raise
    except Exception as exc:
        log.exception("%s: unexpected error", spec)
        raise SourceError(f"{spec}: unexpected {one_line(exc)} (a bug: the traceback is in the log)") from None


def store_one(
    session_factory: Callable[[], Session], spec: SourceSpec, result: FetchResult, now: datetime, started: datetime
) -> IngestCounts:
    """Store one source's papers and its fetch run in one transaction; SourceError when the
    database refuses that data. An unreachable database is not one source's problem: that error
    goes through."""
    try:
        with session_factory() as session, session.begin():
            counts = store_fetch(session, result, now)
            record_run(session, spec, started, counts)
            return counts
    except (OperationalError, InterfaceError):
        raise
    except StatementError as exc:
        log.exception("%s: not stored", spec)
        raise SourceError(f"{spec}: not stored, the database refused it ({one_line(exc.orig or exc)})") from None


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def notes_of(spec: SourceSpec, result: FetchResult) -> list[str]:
    notes = [f"{spec}: {note}" for note in result.notes]
    if result.ignored:
        notes.append(f"{spec}: {len(result.ignored)} field(s) of the wrong type ignored (first: {result.ignored[0]})")
    return notes


def fetch_papers(
    session_factory: Callable[[], Session],
    settings: Settings,
    day: date | None = None,
    transport: httpx.BaseTransport | None = None,
    now: datetime | None = None,
    specs: tuple[SourceSpec, ...] | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
) -> FetchReport:
    """`passthrough`: exceptions to let through rather than report, e.g. Celery's soft time limit."""
    now = now or datetime.now(timezone.utc)
    day = day or now.date()
    report = FetchReport()
    with http_client(settings, transport) as client:
        for spec in specs or settings.source_specs:
            started = datetime.now(timezone.utc)
            try:
                result = fetch_one(spec, settings, client, day, passthrough)
                counts = store_one(session_factory, spec, result, now, started)
            except SourceError as exc:
                report.errors.append(str(exc))
                with session_factory() as session, session.begin():
                    record_run(session, spec, started, IngestCounts(), str(exc))
                continue
            report.notes.extend(notes_of(spec, result))
            report.per_source[str(spec)] = counts
            report.counts.add(counts)
            log.info("%s: %d new, %d updated, %d skipped", spec, counts.new, counts.updated, counts.skipped)
    return report


def record_run(session: Session, spec: SourceSpec, started: datetime, counts: IngestCounts, error: str | None = None) -> None:
    """The fetch-run history the admin console shows, written with the papers it counts."""
    source = str(spec)
    session.add(FetchRun(source=source, started_at=started, finished_at=datetime.now(timezone.utc), new=counts.new,
                         updated=counts.updated, unchanged=counts.unchanged, skipped=counts.skipped,
                         error=error[:2000] if error else None))
    counters.fetch_result(source, counts.new, counts.updated, counts.unchanged, counts.skipped, error)
    if error:
        log.warning("fetch of %s failed: %s", source, error)


def store_is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Paper))


def fetch_with_sample_fallback(
    session_factory: Callable[[], Session],
    settings: Settings,
    sources_configured: bool,
    day: date | None = None,
    transport: httpx.BaseTransport | None = None,
    now: datetime | None = None,
) -> FetchReport:
    """The quick start: live sources when reachable; the bundled sample on a first run offline.

    Only when the operator chose no sources (DIGEST_SOURCES unset) and the store is still empty:
    a configured service never mixes sample papers into real ones.
    """
    report = fetch_papers(session_factory, settings, day, transport, now)
    if report.ok or sources_configured:
        return report
    with session_factory() as session:
        if not store_is_empty(session):
            return report
    sample = fetch_papers(session_factory, settings, day, None, now, (SourceSpec("file", str(SAMPLE_PAPERS)),))
    sample.notes.append(
        f"live sources unreachable ({report.errors[0]}); loaded the bundled sample instead. "
        "Set DIGEST_SOURCES to choose sources (e.g. hf,arxiv:cs.LG)."
    )
    return sample
