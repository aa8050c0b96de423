"""The operator's additions: one address (`digest subscribe`) and a CSV file (`digest import`).

Import: the file is read a line at a time (csv_lines: each line stands alone, the encoding
detected or given), each line validated as the subscribe form validates, and stored in chunks of
CHUNK lines, each its own short transaction: a line that cannot be stored costs that line, a
failure of the database costs at most the chunk in hand, never what was committed before. New
addresses (the usual case) are inserted in bulk; an address already known, suppressed or repeated
goes through `subscribe_request`, as one typed on the form would. Without `confirmed`, the
confirmation emails of a chunk go out after its commit, over the one connection of the whole
import, each counted under the address's hourly cap (given back if it could not be sent).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import String, any_, bindparam, insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest import counters
from digest.config import Settings
from digest.mail import (
    DeliveryFailure,
    ServerUnavailable,
    confirm_url,
    confirmation_message,
    envelope_sender,
    make_transport,
)
from digest.db import session_scope
from digest.models import Frequency, Subscriber, SubscriberStatus, Suppression, Topic, new_link_secret
from digest.schedule import next_due_at
from digest.subscriptions.confirmation import ConfirmationMail, deliver_confirmation, release_slot
from digest.subscriptions.csv_lines import read_lines
from digest.subscriptions.lifecycle import SubscribeOutcome, subscribe_request
from digest.subscriptions.validation import InvalidInput, check_hour, check_timezone, clean_topics, normalise_email

log = logging.getLogger(__name__)

CHUNK = 1000  # lines per transaction


def add_subscriber(factory, email: str, topics: list[str] | str, settings: Settings, *, timezone: str | None = None,
                   hour=None, confirmed: bool = False, transport=None) -> SubscribeOutcome:
    """`digest subscribe`: the subscriber in one short transaction, then, unless `confirmed`,
    the confirmation email after the commit (never a transaction open while the mail goes out)."""
    with factory() as session, session.begin():
        outcome = subscribe_request(session, email, topics, settings, timezone=timezone, hour=hour,
                                    confirmed=confirmed, defer_confirmation=True)
    if outcome.confirmation is not None:  # its slot under the cap was taken in that transaction
        outcome.confirmation_sent = deliver_confirmation(lambda: session_scope(factory), outcome.confirmation,
                                                         settings, transport)
        outcome.note = "confirmation sent" if outcome.confirmation_sent else "confirmation not sent (mail failure)"
    return outcome


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    confirmations: int = 0  # confirmation emails sent
    unconfirmed: int = 0  # confirmation emails that could not be sent
    notes: list[str] = field(default_factory=list)


@dataclass
class _Row:
    line: int
    email: str
    topics: list[str]
    zone: str | None
    hour: int | None


def import_csv(factory: Callable[[], Session], source: Path | str | io.IOBase, settings: Settings, *,
               confirmed: bool = False, encoding: str | None = None, transport=None) -> ImportReport:
    """Lines `email,topics[,timezone,hour]` (topics separated by semicolons, header optional; an
    empty topics cell: the day's trending papers).
    A bad line is reported by its number with the reason and skipped; every good line is kept."""
    report = ImportReport()
    opened = open(source, "rb") if isinstance(source, (str, Path)) else None  # noqa: SIM115 (closed below)
    try:
        lines, decoding = read_lines(opened or source, encoding)
        with _Confirmations(settings, transport) as mail:
            chunk: list[_Row] = []
            for line in lines:
                row = _validated(line, report)
                if row is not None:
                    chunk.append(row)
                if len(chunk) >= CHUNK:
                    _store(factory, chunk, settings, confirmed, report, mail)
                    chunk = []
            if chunk:
                _store(factory, chunk, settings, confirmed, report, mail)
        report.notes.extend(decoding.notes)
        if report.unconfirmed:
            report.notes.append(f"{report.unconfirmed} confirmation email(s) could not be sent ({mail.broken or 'see the log'}); "
                                "those addresses stay pending until they subscribe again")
    finally:
        if opened is not None:
            opened.close()
    return report


def _validated(line, report: ImportReport) -> _Row | None:
    if line.cells is None:
        report.errors.append((line.number, line.error))
        return None
    cells = line.cells
    if not any(cells) or cells[0].startswith("#"):
        return None
    if line.number == 1 and cells[0].lower() == "email":
        return None
    if len(cells) < 2 or len(cells) > 4:
        # A line with an address alone may be a line cut short: an empty topics cell says "none".
        report.errors.append((line.number, "expected email, topics (may be empty) and optionally timezone and hour"))
        return None
    # An empty topics cell is a reader of the day's trending papers.
    email, topics, zone, hour = (cells + ["", ""])[:4]
    try:
        return _Row(line.number, normalise_email(email), clean_topics(topics.split(";") if topics else []),
                    check_timezone(zone or None), check_hour(hour or None))
    except InvalidInput as exc:
        report.errors.append((line.number, str(exc)))
        return None


def _store(factory, chunk: list[_Row], settings: Settings, confirmed: bool, report: ImportReport, mail) -> None:
    """One chunk in one transaction: new addresses in bulk, the others one by one; then, after
    the commit, their confirmation emails."""
    now = datetime.now(timezone.utc)
    to_confirm: list[tuple[SimpleNamespace, str, list[str]]] = []
    due_later: list[ConfirmationMail] = []
    with factory() as session, session.begin():
        addresses = [r.email for r in chunk]
        known = set(session.scalars(select(Subscriber.email).where(_among(session, Subscriber.email, addresses))))
        known |= set(session.scalars(select(Suppression.email).where(_among(session, Suppression.email, addresses))))
        fresh, others, seen = [], [], set(known)
        for row in chunk:
            (others if row.email in seen else fresh).append(row)
            seen.add(row.email)
        try:
            with session.begin_nested():
                ids = _insert_new(session, fresh, confirmed, now)
        except SQLAlchemyError:  # e.g. an address the web inserted meanwhile: one by one instead
            log.info("bulk insert of %d new subscribers refused; storing them one by one", len(fresh))
            others, ids = sorted(fresh + others, key=lambda r: r.line), {}
        report.added += len(ids)
        if not confirmed:
            to_confirm = [(ids[row.email], row.email, row.topics) for row in fresh if row.email in ids]
        for row in others:
            _store_one(session, row, settings, confirmed, now, report, due_later)
    new_mail = [ConfirmationMail(row.id, email, confirmation_message(settings, email, confirm_url(row, settings), topics))
                for row, email, topics in to_confirm]
    mail.send(factory, new_mail + due_later, report)


def _among(session: Session, column, values: list[str]):
    """`column IN (values)`; on PostgreSQL `= ANY(array)`: one parameter, not a thousand for the
    driver to rewrite per chunk."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(String)))
    return column.in_(values)


def _insert_new(session: Session, rows: list[_Row], confirmed: bool, now: datetime) -> dict[str, SimpleNamespace]:
    """The new rows, each as its id and link secret (what its confirmation link needs)."""
    if not rows:
        return {}
    values = []
    for row in rows:
        schedule = SimpleNamespace(timezone=row.zone or "UTC", delivery_hour=7 if row.hour is None else row.hour,
                                   frequency=Frequency.daily, weekday=0)
        values.append({
            "email": row.email, "status": SubscriberStatus.active if confirmed else SubscriberStatus.pending,
            "timezone": schedule.timezone, "delivery_hour": schedule.delivery_hour, "frequency": Frequency.daily,
            "weekday": 0, "max_papers": 10, "notify_empty": False, "token_version": 1, "created_at": now,
            "link_secret": new_link_secret(),
            "confirmed_at": now if confirmed else None, "next_due_at": next_due_at(schedule, now) if confirmed else None,
            # The confirmation about to be sent counts under the hourly cap (given back if it fails).
            "confirmation_sent_at": None if confirmed else now, "confirmations_sent": 0 if confirmed else 1,
        })
    topics = [(row.email, query, position) for row in rows for position, query in enumerate(row.topics)]
    if session.get_bind().dialect.name == "postgresql":
        ids = _insert_postgresql(session, values, topics)
    else:
        ids = {email: sid for sid, email in session.execute(
            insert(Subscriber.__table__).returning(Subscriber.id, Subscriber.email), values)}
        session.execute(insert(Topic.__table__), [
            {"subscriber_id": ids[email], "query": query, "position": position} for email, query, position in topics
        ])
    return {v["email"]: SimpleNamespace(id=ids[v["email"]], link_secret=v["link_secret"]) for v in values}


def _insert_postgresql(session: Session, values: list[dict], topics: list[tuple[str, str, int]]) -> dict[str, int]:
    """The chunk as two INSERT ... SELECT FROM unnest(arrays): one parameter per column instead of
    one per cell, so the driver does not rewrite a statement of 15,000 placeholders per chunk
    (measured: that cost more than the insert itself)."""
    table = Subscriber.__table__
    columns = list(values[0])
    casts = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=session.get_bind().dialect)}[])" for c in columns)
    statement = text(
        f"INSERT INTO subscribers ({', '.join(columns)}) SELECT * FROM unnest({casts}) RETURNING id, email"
    )
    arrays = {c: [_plain(v[c]) for v in values] for c in columns}
    ids = {email: sid for sid, email in session.execute(statement, arrays)}
    session.execute(
        text("INSERT INTO topics (subscriber_id, query, position) "
             "SELECT * FROM unnest(CAST(:ids AS INTEGER[]), CAST(:queries AS VARCHAR[]), CAST(:positions AS INTEGER[]))"),
        {"ids": [ids[e] for e, _, _ in topics], "queries": [q for _, q, _ in topics], "positions": [p for _, _, p in topics]},
    )
    return ids


def _plain(value):
    """What the array parameter holds: enums as their stored names (native_enum=False)."""
    return value.name if isinstance(value, (SubscriberStatus, Frequency)) else value


def _store_one(session: Session, row: _Row, settings: Settings, confirmed: bool, now: datetime,
               report: ImportReport, due_later: list[int]) -> None:
    """A known, suppressed or repeated address: exactly what the subscribe form would do."""
    try:
        with session.begin_nested():
            outcome = subscribe_request(session, row.email, row.topics, settings, timezone=row.zone, hour=row.hour,
                                        confirmed=confirmed, now=now, defer_confirmation=True)
    except InvalidInput as exc:
        report.errors.append((row.line, str(exc)))
        return
    except SQLAlchemyError as exc:
        report.errors.append((row.line, f"could not be stored: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
        return
    if outcome.created:
        report.added += 1
    else:
        report.unchanged += 1
    if outcome.confirmation is not None:  # its slot taken; sent after the chunk's commit
        due_later.append(outcome.confirmation)


class _Confirmations:
    """The import's one connection to the mail server, opened when the first email goes out."""

    def __init__(self, settings: Settings, transport) -> None:
        self.settings = settings
        self.own = transport is None
        self.transport = transport
        self.broken = ""  # the server cannot be reached: the rest of the import sends nothing

    def __enter__(self) -> _Confirmations:
        return self

    def __exit__(self, *exc) -> None:
        if self.own and self.transport is not None:
            self.transport.close()

    def _carrier(self):
        if self.transport is None:
            self.transport = make_transport(self.settings)
        return self.transport

    def send(self, factory, mails: list[ConfirmationMail], report: ImportReport) -> None:
        """The chunk's confirmations, each with its slot under the cap already taken and committed;
        a slot whose email could not be sent is given back."""
        failed: list[int] = []
        for mail in mails:
            if self.broken:
                failed.append(mail.subscriber_id)
                continue
            try:
                self._carrier().send(mail.message, envelope_sender(self.settings), mail.address)
                counters.confirmation_sent()
                report.confirmations += 1
            except DeliveryFailure as exc:
                log.warning("confirmation for subscriber %s not sent: %s", mail.subscriber_id, exc)
                failed.append(mail.subscriber_id)
                if isinstance(exc, ServerUnavailable):
                    self.broken = str(exc)
        if failed:
            with factory() as session, session.begin():
                for subscriber_id in failed:
                    release_slot(session, subscriber_id)
            report.unconfirmed += len(failed)
