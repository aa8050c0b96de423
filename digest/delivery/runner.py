"""`digest send` in one process: dispatch in a thread, batches built ahead in forked processes,
everything sent over one connection.

Without options: the digests due now (as dispatch would create them) plus rows waiting for a retry
or left in `sending` by a dead worker. With `edition`: that edition to every active subscriber who
has not had it, whatever the hour. With `email`: only that subscriber, whatever their hour.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.delivery import due, ledger
from digest.delivery.compose import Built, build_batch, composer_for
from digest.delivery.due import DispatchReport, create_edition_rows
from digest.delivery.ledger import SessionFactory, chunks
from digest.delivery.send import SendReport, send_batch, send_claimed
from digest.delivery.windows import utcnow
from digest.editions import edition_paper_count, latest_closed_edition, latest_edition
from digest.errors import DigestError
from digest.mail import OutboxTransport, Transport, check_sending, make_transport
from digest.models import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

BUILDERS = 2  # processes building digests for `digest send` (at most one per CPU)


class _Batches:
    """The batches of ids a run sends: a list known in advance, or the pages a dispatch running in
    a thread of its own has committed, handed over as they come, so that building and sending
    start with the first page instead of after the last."""

    _END = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ended = False
        self.error: BaseException | None = None
        self.dispatched: DispatchReport | None = None

    @classmethod
    def of(cls, settings: Settings, ids: Sequence[int]) -> _Batches:
        batches = cls(settings)
        for chunk in chunks(list(ids), settings.batch_size):
            batches._queue.put(chunk)
        batches._queue.put(cls._END)
        return batches

    @classmethod
    def from_dispatch(cls, factory: SessionFactory, settings: Settings, now: datetime) -> _Batches:
        batches = cls(settings)

        def run() -> None:
            try:
                batches.dispatched = due.dispatch(factory, settings, batches._queue.put, now)
            except BaseException as exc:  # raised in the sending thread, after what was committed
                batches.error = exc
            finally:
                batches._queue.put(cls._END)

        batches._thread = threading.Thread(target=run, name="dispatch", daemon=True)
        batches._thread.start()
        return batches

    def take(self, wait: bool = True) -> list[int] | None:
        """The next batch; None when there are no more (or, without `wait`, none ready yet)."""
        if self._ended:
            return None
        try:
            chunk = self._queue.get(block=wait)
        except queue.Empty:
            return None
        if chunk is self._END:
            self._ended = True
            self.finish(raise_error=False)  # sending what was committed comes first; finish() raises
            return None
        return chunk

    @property
    def dispatching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def finish(self, raise_error: bool = True) -> None:
        """Wait for the dispatch thread; its error, if any, goes up here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.error is not None and raise_error:
            error, self.error = self.error, None
            raise error


def send_batches(
    factory: SessionFactory,
    settings: Settings,
    ids: Sequence[int] | _Batches,
    transport: Transport,
    on_progress: Callable[..., None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    builder: _Builder | None = None,
) -> SendReport:
    """Send these deliveries in batches over one connection; with more than one batch, forked
    builder processes build the next batches meanwhile (`builder`, when started ahead)."""
    report = SendReport()
    batches = ids if isinstance(ids, _Batches) else _Batches.of(settings, ids)
    first = batches.take()
    second = batches.take() if first is not None else None
    if builder is not None and second is None:  # started ahead, but one batch builds as fast in-line
        builder.close()
        builder = None
    elif builder is None and second is not None and not batches.dispatching:  # never fork beside a thread
        builder = _Builder.start(factory, settings)
    if builder is None:
        given = deque(chunk for chunk in (first, second) if chunk is not None)
        while (chunk := given.popleft() if given else batches.take()) is not None:
            batch = send_batch(factory, settings, chunk, transport=transport, on_progress=on_progress, sleep=sleep)
            report.add(batch)
            if batch.errors:  # the server is gone: the rest waits for the next run
                batches.finish(raise_error=False)
                break
        return report
    with builder:
        return _BuildingAhead(factory, settings, batches, transport, builder, on_progress, sleep).send([first, second], report)


@dataclass
class _BuildingAhead:
    """While one batch is sent and recorded here, the builder processes build the next ones (already
    claimed: the claim is what makes them ours). If this run stops early, the batches claimed ahead
    go back to pending at once, never left in `sending` until the timeout."""

    factory: SessionFactory
    settings: Settings
    batches: _Batches
    transport: Transport
    builder: _Builder
    on_progress: Callable[..., None] | None
    sleep: Callable[[float], None]
    ahead: deque = field(default_factory=deque)  # (claimed ids, claim time, report, future build)

    def claim_and_build(self, chunk: list[int]) -> None:
        now = utcnow()
        claimed = ledger.claim(self.factory, chunk, now, self.settings.sending_timeout)
        report = SendReport(not_claimed=len(set(chunk)) - len(claimed))
        self.ahead.append((claimed, now, report, self.builder.submit(claimed) if claimed else None))

    def fill(self) -> None:
        # Keep every builder busy; wait for a dispatch still committing pages only when there is
        # nothing else to send.
        while len(self.ahead) < self.builder.depth and (chunk := self.batches.take(wait=not self.ahead)) is not None:
            self.claim_and_build(chunk)

    def release_ahead(self, reason: str) -> None:
        for claimed, *_ in self.ahead:
            ledger.release(self.factory, claimed, reason)
        self.ahead.clear()

    def send(self, first: list[list[int] | None], report: SendReport) -> SendReport:
        try:
            for chunk in first:
                if chunk is not None:
                    self.claim_and_build(chunk)
            self.fill()
            while self.ahead:
                claimed, now, batch, built = self.ahead.popleft()
                if (following := self.batches.take(wait=False)) is not None:
                    self.claim_and_build(following)
                if claimed:
                    send_claimed(self.factory, self.settings, claimed, self.transport, now, batch,
                                 sleep=self.sleep, on_progress=self.on_progress, built=built)
                report.add(batch)
                if batch.errors:  # the server is gone: the rest waits for the next run
                    self.release_ahead("; ".join(batch.errors))
                    self.batches.finish(raise_error=False)
                    break
                self.fill()
        except BaseException:
            self.release_ahead("run stopped before this batch was sent")
            raise
        return report


class _Builder:
    """Forked processes that load, match and compose batches for `digest send`, so that building
    (about three quarters of the CPU per message) runs on the other cores while this process talks
    to the SMTP server and records outcomes. Only for a real PostgreSQL engine on a machine with
    more than one CPU; everything else builds in-line, as before."""

    def __init__(self, pool, depth: int) -> None:
        self.pool = pool
        self.depth = depth  # batches claimed and building while one is sent

    @classmethod
    def start(cls, factory: SessionFactory, settings: Settings, warm: Sequence[date] = ()) -> _Builder | None:
        """Fork the builders now. Each one loads the `warm` editions' papers, match index and
        templates at once, so that `digest send` can start them before it creates the rows: the
        set-up then overlaps that work instead of delaying the first message."""
        if (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
            return None
        with factory() as session:
            bind = session.get_bind()
        if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
            return None
        processes = min(os.cpu_count() or 1, BUILDERS)
        pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("fork"),
            initializer=_builder_init, initargs=(factory, settings, bind, tuple(warm)),
        )
        pool.submit(int)  # with fork, the first task starts every process, and so their warm-up
        return cls(pool, processes)

    def submit(self, claimed: list[int]):
        return self.pool.submit(_builder_build, claimed)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> _Builder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_builder_state: dict[str, object] = {}


def _builder_init(factory: SessionFactory, settings: Settings, engine: Engine, warm: tuple[date, ...] = ()) -> None:
    engine.dispose(close=False)  # the parent's pooled connections are the parent's: open our own
    _builder_state.update(factory=factory, settings=settings)
    if warm:
        try:
            composer = composer_for(settings)
            with factory() as session:
                for day, edition in composer.editions(session, warm).items():
                    composer.renderer(edition, day)
        except Exception:  # only a head start: the first batch builds whatever is missing
            log.exception("builder warm-up failed")


def _builder_build(claimed: list[int]) -> Built:
    return build_batch(_builder_state["factory"], _builder_state["settings"], claimed)


@dataclass
class SendRun:
    report: SendReport
    edition: date | None
    transport: str
    notes: list[str] = field(default_factory=list)
    # Notes a newcomer's first run need not see (the demo digest goes out from an open edition).
    fine_print: list[str] = field(default_factory=list)


def send_now(
    factory: SessionFactory,
    settings: Settings,
    edition: date | None = None,
    email: str | None = None,
    now: datetime | None = None,
    progress_factory: Callable[[int], object] | None = None,
    transport: Transport | None = None,
) -> SendRun:
    """`digest send`: everything in one process over one connection (see the module docstring).
    A configuration fault (ConfigError) is raised before any row is created or claimed."""
    check_sending(settings)
    now = now or utcnow()
    with factory() as session:
        email = _active_address(session, email)
        edition = _edition_to_send(session, edition, email)
        expected = _due_count(session, edition, email, now)
        builder = None
        if expected > settings.batch_size:  # more than one batch: builders start while rows are created
            warm = edition or latest_closed_edition(session, now)
            builder = _Builder.start(factory, settings, warm=[warm] if warm else [])
    process = _OneProcess(factory, settings, now, progress_factory, transport, builder)
    try:
        if edition is not None:
            return process.send_edition(edition, email)
        return process.send_due(expected)
    finally:
        if builder is not None:
            builder.close()


def _active_address(session: Session, email: str | None) -> str | None:
    if email is None:
        return None
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))
    if subscriber is None:
        raise DigestError(f"no subscriber {email}")
    if subscriber.status != SubscriberStatus.active:
        raise DigestError(f"{email} is {subscriber.status.value}, not active: nothing to send")
    return subscriber.email


def _edition_to_send(session: Session, edition: date | None, email: str | None) -> date | None:
    """The edition asked for, or the newest one for a single subscriber; None: whatever is due."""
    if edition is None and email is not None:
        edition = latest_edition(session)
        if edition is None:
            raise DigestError("the store has no papers yet: run `digest fetch` first")
    if edition is not None and not edition_paper_count(session, edition):
        raise DigestError(f"edition {edition} has no papers (editions are the UTC dates papers were fetched)")
    return edition


def _due_count(session: Session, edition: date | None, email: str | None, now: datetime) -> int:
    """How many rows this run will create, about (those who already had the edition count too)."""
    if email is not None:
        return 1
    active = select(func.count()).select_from(Subscriber).where(Subscriber.status == SubscriberStatus.active)
    if edition is None:
        active = active.where(Subscriber.next_due_at <= now)
    return session.scalar(active) or 0


@dataclass
class _OneProcess:
    factory: SessionFactory
    settings: Settings
    now: datetime
    progress_factory: Callable[[int], object] | None
    transport: Transport | None
    builder: _Builder | None

    def send_edition(self, edition: date, email: str | None) -> SendRun:
        """`--edition D`: new rows for whoever has not had D, and D's rows an earlier run did not
        finish: left pending, or in `sending` longer than DIGEST_SENDING_TIMEOUT (that run died)."""
        run = SendRun(SendReport(), edition, "")
        ids, had_it = create_edition_rows(self.factory, edition, self.now, email)
        with self.factory() as session:
            left, busy = ledger.unfinished_ids(session, edition, self.now, self.settings.sending_timeout, email)
        ids = sorted(set(ids) | set(left))
        if had_it:
            run.notes.append(f"{had_it} subscriber(s) already had edition {edition}")
        if busy:
            run.notes.append(
                f"{busy} being sent by another run (or by one killed less than DIGEST_SENDING_TIMEOUT, "
                f"{self.settings.sending_timeout:g} s, ago: run this again after that to take them over)"
            )
        if edition >= self.now.date():
            run.fine_print.append(
                f"edition {edition} is today's and still open: papers fetched later today go to nobody who got it now"
            )
        self.send(run, _Batches.of(self.settings, ids), len(ids))
        return run

    def send_due(self, expected: int) -> SendRun:
        """The digests due now. Rows are created page by page in a thread while the first pages
        are already being built and sent; the progress total is the count of due subscribers
        until dispatch has finished, then the exact count."""
        with self.factory() as session:
            run = SendRun(SendReport(), latest_closed_edition(session, self.now), "")
        dispatching = _Batches.from_dispatch(self.factory, self.settings, self.now)
        try:
            self.send(run, dispatching, expected, dispatching)
        except BaseException:
            dispatching.finish(raise_error=False)  # the error that stopped sending goes up, not this one
            raise
        dispatching.finish()
        if dispatching.dispatched is not None:
            run.edition = dispatching.dispatched.edition or run.edition
            if dispatching.dispatched.nothing_new:
                run.notes.append(f"{dispatching.dispatched.nothing_new} due subscriber(s) had no new edition yet")
        return run

    def send(self, run: SendRun, batches: _Batches, total: int, dispatching: _Batches | None = None) -> None:
        transport = self.transport or make_transport(self.settings)
        run.transport = transport.description
        try:
            with self.progress_factory(total) if self.progress_factory else nullcontext() as bar:
                on_progress = _progress_callback(bar, dispatching) if bar is not None else None
                run.report = send_batches(self.factory, self.settings, batches, transport, on_progress=on_progress,
                                          builder=self.builder)
        finally:
            if self.transport is None:
                transport.close()
        if isinstance(transport, OutboxTransport):
            run.notes.append(
                f"DIGEST_SMTP_URL is not set: messages were written to {self.settings.outbox_dir}/ as .eml files"
            )


def _progress_callback(bar, dispatching: _Batches | None) -> Callable[..., None]:
    exact = dispatching is None

    def advance(**counts) -> None:
        nonlocal exact
        if not exact and dispatching.dispatched is not None:  # dispatch is done: the total is known
            bar.set_total(dispatching.dispatched.enqueued)
            exact = True
        bar.advance(**counts)

    return advance
