"""`digest import`: subscribers from a CSV file, a bad row reported by its line and skipped."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.subscriptions.confirmation import send_due_confirmation
from digest.subscriptions.lifecycle import SubscribeOutcome, subscribe_request
from digest.subscriptions.validation import InvalidInput


def add_subscriber(factory, email: str, topics: list[str] | str, settings: Settings, *, timezone: str | None = None,
                   hour=None, confirmed: bool = False, transport=None) -> SubscribeOutcome:
    """`digest subscribe`: the subscriber in one short transaction, then, unless `confirmed`,
    the confirmation email after the commit (never a transaction open while the mail goes out)."""
    with factory() as session, session.begin():
        outcome = subscribe_request(session, email, topics, settings, timezone=timezone, hour=hour,
                                    confirmed=confirmed, defer_confirmation=True)
    if outcome.confirmation_due:
        with factory() as session:
            outcome.confirmation_sent = send_due_confirmation(session, outcome.subscriber.id, settings,
                                                              transport=transport)
        outcome.note = "confirmation sent" if outcome.confirmation_sent else "confirmation not sent (mail failure)"
    return outcome


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def import_csv(
    session: Session, source: Path | str | io.TextIOBase, settings: Settings, *, confirmed: bool = False, transport=None
) -> ImportReport:
    """Rows `email,topics[,timezone,hour]` (topics separated by semicolons, header optional).
    A bad row is reported by its line number and skipped; every good row is kept."""
    text = Path(source).read_text(encoding="utf-8-sig") if isinstance(source, (str, Path)) else source.read()
    report = ImportReport()
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if line == 1 and cells[0].lower() == "email":
            continue
        if len(cells) < 2 or len(cells) > 4:
            report.errors.append((line, "expected email, topics and optionally timezone and hour"))
            continue
        email, topics, zone, hour = (cells + ["", ""])[:4]
        savepoint = session.begin_nested()
        try:
            outcome = subscribe_request(
                session,
                email,
                [t for t in topics.split(";")] if topics else [],
                settings,
                timezone=zone or None,
                hour=hour or None,
                confirmed=confirmed,
                transport=transport,
            )
        except InvalidInput as exc:
            savepoint.rollback()
            report.errors.append((line, str(exc)))
            continue
        savepoint.commit()
        if outcome.created:
            report.added += 1
        else:
            report.unchanged += 1
    return report

