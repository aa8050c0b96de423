"""Every statement on the deliveries ledger (and the suppressions it consults): insert a page of
rows, advance due times, claim, release, pick what needs a task again, suppress. (The outcomes of
a batch are written by the Recorder, `digest.delivery.recorder`.)

One row per (subscriber, edition), unique: two dispatch runs never make two; a row is claimed with
a conditional UPDATE before it is sent (the ids returned are the caller's alone) and recorded after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, Integer, String, and_, any_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.models import Delivery, DeliveryStatus, Subscriber, Suppression

SessionFactory = Callable[[], Session]


def chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def among(session: Session, column, values: Sequence, item_type):
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`: one parameter instead of a
    thousand, so the driver does not parse a new query text for every page."""
    if is_postgresql(session):
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(item_type)))
    return column.in_(list(values))


def newest_editions(session: Session, subscriber_ids: Sequence[int]) -> dict[int, date]:
    """Each subscriber's newest delivery row: where their next window starts."""
    rows = session.execute(
        select(Delivery.subscriber_id, func.max(Delivery.edition))
        .where(among(session, Delivery.subscriber_id, subscriber_ids, Integer))
        .group_by(Delivery.subscriber_id)
    )
    return {sid: edition for sid, edition in rows}


def suppressed(session: Session, emails: Iterable[str]) -> set[str]:
    emails = list(emails)
    if not emails:
        return set()
    return set(session.scalars(select(Suppression.email).where(among(session, Suppression.email, emails, String))))


def suppress(factory: SessionFactory, email: str, reason: str) -> None:
    with factory() as session, session.begin():
        if session.get(Suppression, email) is None:
            session.add(Suppression(email=email, reason=reason[:1000]))


def pending_row(subscriber_id: int, edition: date, now: datetime, requeue_at: datetime) -> dict:
    """A new ledger row; `requeue_at` is when a sweep re-enqueues it if its first enqueue was lost."""
    return {
        "subscriber_id": subscriber_id,
        "edition": edition,
        "status": DeliveryStatus.pending,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": requeue_at,
        "paper_ids": [],
    }


def insert_ignoring_duplicates(session: Session, rows: list[dict]) -> list[int]:
    """INSERT ... ON CONFLICT (subscriber_id, edition) DO NOTHING RETURNING id: the ids of the
    rows this call created; a row another run created first is simply not returned."""
    if not rows:
        return []
    if is_postgresql(session):
        shared = {key: value for key, value in rows[0].items() if key != "subscriber_id"}
        if all({key: value for key, value in row.items() if key != "subscriber_id"} == shared for row in rows):
            return _insert_page_postgresql(session, [row["subscriber_id"] for row in rows], shared)
        insert = postgresql.insert
    else:
        insert = sqlite.insert
    statement = (
        insert(Delivery.__table__)  # Core, not the ORM bulk path: a page of rows in one statement
        .values(rows)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "edition"])
        .returning(Delivery.id)
    )
    return list(session.scalars(statement))


def _insert_page_postgresql(session: Session, subscriber_ids: list[int], shared: dict) -> list[int]:
    """A page of rows that differ only by subscriber, as one INSERT ... SELECT FROM unnest(ids):
    compiling a 1000-row VALUES list cost more than the insert itself."""
    table = Delivery.__table__
    names = list(shared)
    statement = text(
        f"INSERT INTO deliveries (subscriber_id, {', '.join(names)}) "
        f"SELECT sid, {', '.join(':' + name for name in names)} FROM unnest(CAST(:ids AS INTEGER[])) AS sid "
        "ON CONFLICT (subscriber_id, edition) DO NOTHING RETURNING id"
    ).bindparams(*(bindparam(name, type_=table.c[name].type) for name in names))
    return list(session.scalars(statement, {"ids": subscriber_ids, **shared}))


def advance_due_times(session: Session, changes: list[tuple[int, datetime, datetime]]) -> None:
    """next_due_at: old -> new for each (id, old, new), only where it still holds the old value:
    a concurrent dispatch that advanced it first wins, and both computed the same instant anyway."""
    if is_postgresql(session):  # one statement for the page instead of one per subscriber
        session.execute(
            text(
                "UPDATE subscribers SET next_due_at = v.new "
                "FROM unnest(CAST(:ids AS INTEGER[]), CAST(:olds AS TIMESTAMPTZ[]), CAST(:news AS TIMESTAMPTZ[])) "
                "AS v(id, old, new) WHERE subscribers.id = v.id AND subscribers.next_due_at = v.old"
            ),
            {"ids": [c[0] for c in changes], "olds": [c[1] for c in changes], "news": [c[2] for c in changes]},
        )
        return
    table = Subscriber.__table__
    session.connection().execute(
        table.update()
        .where(table.c.id == bindparam("sid"), table.c.next_due_at == bindparam("old"))
        .values(next_due_at=bindparam("new")),
        [{"sid": sid, "old": old, "new": new} for sid, old, new in changes],
    )


def set_first_due_times(session: Session, due: list[tuple[int, datetime]]) -> None:
    """next_due_at for subscribers who have none yet, only where it is still unset."""
    table = Subscriber.__table__
    session.connection().execute(
        table.update().where(table.c.id == bindparam("sid"), table.c.next_due_at.is_(None))
        .values(next_due_at=bindparam("new")),
        [{"sid": sid, "new": new} for sid, new in due],
    )


def claim(factory: SessionFactory, ids: Sequence[int], now: datetime, sending_timeout: float) -> list[int]:
    """pending -> sending (or a stale `sending` taken over), in one conditional UPDATE: the ids
    returned are this caller's alone."""
    stale = now - timedelta(seconds=sending_timeout)
    with factory() as session, session.begin():
        return list(
            session.scalars(
                update(Delivery)
                .where(
                    Delivery.id.in_(list(ids)),
                    or_(
                        Delivery.status == DeliveryStatus.pending,
                        and_(Delivery.status == DeliveryStatus.sending, Delivery.claimed_at < stale),
                    ),
                )
                .values(status=DeliveryStatus.sending, claimed_at=now, attempts=Delivery.attempts + 1)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
        )


def release(
    factory: SessionFactory,
    ids: Sequence[int],
    reason: str | None = None,
    retry_at: datetime | None = None,
    held: DeliveryStatus = DeliveryStatus.sending,
) -> None:
    """Rows of ours that were not sent: pending again, due at `retry_at` (None: the next run).
    Only rows still `held` change, so an outcome already recorded stays as it is."""
    if not ids:
        return
    values: dict = {"status": DeliveryStatus.pending, "next_attempt_at": retry_at}
    if reason is not None:
        values["last_error"] = reason[:1000]
    with factory() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(list(ids)), Delivery.status == held)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def take_due_again(session: Session, now: datetime, sending_timeout: float) -> list[int]:
    """Rows that need a task again: pending ones whose retry time has come (or that never made it
    to the queue), and rows in `sending` whose worker has been silent longer than the timeout.
    Their next_attempt_at moves forward so the next sweep does not enqueue them again meanwhile."""
    stale = now - timedelta(seconds=sending_timeout)
    requeue_at = now + timedelta(seconds=sending_timeout)
    ids = list(
        session.scalars(
            select(Delivery.id)
            .where(
                or_(
                    and_(
                        Delivery.status == DeliveryStatus.pending,
                        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                    ),
                    and_(Delivery.status == DeliveryStatus.sending, Delivery.claimed_at < stale),
                ),
                Delivery.subscriber_id.is_not(None),
            )
            .order_by(Delivery.id)
        )
    )
    for chunk in chunks(ids, 1000):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(chunk), Delivery.status == DeliveryStatus.pending)
            .values(next_attempt_at=requeue_at)
            .execution_options(synchronize_session=False)
        )
    return ids


def unfinished_ids(
    session: Session, edition: date, now: datetime, sending_timeout: float, email: str | None = None
) -> tuple[list[int], int]:
    """Rows of this edition an earlier run did not finish (one subscriber's, with `email`): the
    ids to send now (pending, or in `sending` longer than the timeout: their run died), and how
    many another run is sending right now."""
    stale = now - timedelta(seconds=sending_timeout)
    rows = select(Delivery.id, Delivery.status, Delivery.claimed_at).where(
        Delivery.edition == edition, Delivery.status.in_([DeliveryStatus.pending, DeliveryStatus.sending])
    )
    if email is not None:
        rows = rows.join(Subscriber, Subscriber.id == Delivery.subscriber_id).where(Subscriber.email == email)
    take, busy = [], 0
    for delivery_id, status, claimed_at in session.execute(rows):
        if status == DeliveryStatus.pending or claimed_at is None or claimed_at < stale:
            take.append(delivery_id)
        else:
            busy += 1
    return take, busy


def unfinished_subscribers(session: Session, subscriber_ids: Sequence[int], edition: date) -> set[int]:
    """Which of these subscribers have a row of this edition still pending or sending."""
    return set(session.scalars(
        select(Delivery.subscriber_id).where(
            among(session, Delivery.subscriber_id, subscriber_ids, Integer), Delivery.edition == edition,
            Delivery.status.in_([DeliveryStatus.pending, DeliveryStatus.sending]),
        )
    ))


def refresh_statistics_if_stale(factory: SessionFactory, created: int) -> None:
    """On a fresh install the deliveries table was analyzed while empty (or nearly): PostgreSQL
    then plans every claim, load and outcome of the first edition for a table of a few rows,
    and scans (measured: a batch of 100 cost 45 ms more) until autovacuum analyzes it a minute
    later. When the statistics count fewer rows than this run just added, analyze it now, once.
    A table never analyzed (reltuples -1, as on a fresh install before autovacuum's first pass)
    is analyzed too: its size is estimated from its pages, but without statistics on `status`
    PostgreSQL guesses that a half percent of the rows are pending and plans each claim of 100 as
    a scan of every pending row through the status index (measured: 10 ms a claim at 20,000
    rows, growing with the edition, in the sending process's path)."""
    with factory() as session:
        bind = session.get_bind()
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        return  # (a test's shared transaction is never analyzed from inside)
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        known = connection.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass"))
        if known is not None and known < created:
            connection.exec_driver_sql("ANALYZE deliveries")
