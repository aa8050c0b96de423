"""The Recorder: each outcome written right after the SMTP server answered, and none lost when
the database goes away in the middle of a batch.

On PostgreSQL (psycopg) it has one autocommit connection of its own, with synchronous_commit
off, and sends each outcome as a prepared UPDATE without waiting for PostgreSQL's answer: the
statement is written whole to the socket before the next message goes to the SMTP server, and its
answer is read just before the next outcome is sent. So the SMTP exchange of message N+1 overlaps
the commit of message N's outcome instead of following it. A worker killed at any moment loses
nothing: PostgreSQL executes and commits a statement it has received whether or not the client is
still there to read the answer, and the kernel delivers bytes already written.

What PostgreSQL itself may lose: the outcome in flight when its connection is cut (a fast or
immediate stop, a restart, a network cut), and, with synchronous_commit off, outcomes it had
acknowledged but not yet flushed when it crashed (an immediate stop). Either way the SMTP server
had accepted those messages, and a row left in `sending` would be sent again after the timeout.
So every outcome is kept here until it is known to be durable: `confirm()` (at the end of each
batch) commits one transaction synchronously that writes a WAL record, which flushes the WAL up to
it and so every outcome before it. When the connection fails, the Recorder sends nothing more (the caller is
blocked in it), reconnects with back-off for up to `outage_wait` seconds, writes every kept
outcome again (each UPDATE only changes a row still in `sending`, so writing one twice is
harmless), refreshes the batch's claim and returns: the batch goes on. Only a database away for
longer than that makes it give up (RecordingLost); the kept outcomes' messages are then sent
again after the sending timeout, at most one batch of them.

Elsewhere (SQLite, other drivers) each outcome is a short committed transaction, retried the same
way while the database is locked or away.
"""

from __future__ import annotations

import json
import logging
import select as select_module
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import psycopg
from psycopg import pq
from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError, OperationalError

from digest.delivery.ledger import SessionFactory, suppress
from digest.delivery.windows import utcnow
from digest.errors import DigestError
from digest.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)

FIRST_RETRY = 0.25  # seconds before reconnecting; doubles, at most MAX_RETRY
MAX_RETRY = 2.0


class RecordingLost(DigestError):
    """The database stayed away longer than the Recorder waits: outcomes could not be written."""


class _Lost(Exception):
    """The recorder's connection is gone (as opposed to PostgreSQL refusing one outcome)."""


class Recorder:
    def __init__(self, factory: SessionFactory, claimed: Sequence[int] = (), outage_wait: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.factory = factory
        self.claimed = list(claimed)
        self.outage_wait = outage_wait
        self.sleep = sleep
        self.unconfirmed: dict[int, dict] = {}  # outcomes written since the last durable point
        self.recoveries = 0
        self._engine: Engine | None = None
        self._connection = None
        self._pgconn = None
        self._prepared: dict[tuple[str, ...], bytes] = {}
        self._waiting: int | None = None  # the outcome sent whose answer is not read yet
        with factory() as session:
            bind = session.get_bind()
        if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
            self._engine = bind
            self._open()

    # ---------------------------------------------------------------- the connection

    def _open(self) -> None:
        self._prepared, self._waiting = {}, None
        self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._connection.exec_driver_sql("SET synchronous_commit TO off")
        driver = self._connection.connection.driver_connection
        if driver.__class__.__module__.startswith("psycopg"):  # psycopg 3: libpq's own calls
            self._pgconn = driver.pgconn

    def _discard(self) -> None:
        self._waiting = None
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:  # it is broken already: nothing to tidy
                pass
        self._connection = self._pgconn = None

    def _statement(self, columns: tuple[str, ...]) -> bytes:
        name = self._prepared.get(columns)
        if name is None:
            assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, 1))
            sql = f"UPDATE deliveries SET {assignments} WHERE id = ${len(columns) + 1} AND status = 'sending'"
            name = f"digest_record_{len(self._prepared)}".encode()
            result = self._pgconn.prepare(name, sql.encode())
            if result.status != pq.ExecStatus.COMMAND_OK:
                self._raise_for(result.get_error_message(), f"could not prepare {sql!r}")
            self._prepared[columns] = name
        return name

    @staticmethod
    def _text_value(value) -> bytes | None:
        """A parameter in PostgreSQL's text format; the column's type is the server's to infer."""
        if value is None:
            return None
        if isinstance(value, DeliveryStatus):
            return value.name.encode()  # stored as the enum's name (native_enum=False)
        if isinstance(value, list):
            return json.dumps(value).encode()
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return value.isoformat().encode()
        return str(value).encode()

    def _raise_for(self, error: str | None, what: str, sqlstate: bytes | None = None) -> None:
        # Class 08 (connection exception) and 57 (operator intervention: a shutdown, a restart)
        # mean the connection is gone, even while libpq still calls it OK.
        if self._pgconn is None or self._pgconn.status != pq.ConnStatus.OK or (sqlstate or b"")[:2] in (b"08", b"57"):
            raise _Lost(error or what)
        raise RuntimeError(f"{what}: {error}")

    def _send(self, delivery_id: int, values: dict) -> None:
        self._read_answer()
        columns = tuple(values)
        name = self._statement(columns)
        params = [self._text_value(values[column]) for column in columns]
        params.append(str(int(delivery_id)).encode())
        self._pgconn.send_query_prepared(name, params)
        self._waiting = delivery_id
        while self._pgconn.flush():  # psycopg keeps libpq non-blocking: wait until it is all sent
            select_module.select([], [self._pgconn.socket], [])

    def _read_answer(self) -> None:
        """Read the answer to the outcome sent last; raise if PostgreSQL refused it."""
        if self._waiting is None:
            return
        delivery_id, self._waiting = self._waiting, None
        self._until_answered()
        error = sqlstate = None
        while (result := self._pgconn.get_result()) is not None:
            if result.status != pq.ExecStatus.COMMAND_OK and error is None:
                error = result.get_error_message() or str(result.status)
                sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
        if error is not None:
            try:
                self._raise_for(error, "recording an outcome failed", sqlstate)
            except RuntimeError:  # refused, not lost: never written again
                self.unconfirmed.pop(delivery_id, None)
                raise

    def _until_answered(self) -> None:
        """Wait for PostgreSQL's answer in select(), which lets the process's other threads run
        (dispatch, the builders' results coming in): libpq's get_result waits holding the GIL."""
        self._pgconn.consume_input()
        while self._pgconn.is_busy():
            select_module.select([self._pgconn.socket], [], [])
            self._pgconn.consume_input()

    # ---------------------------------------------------------------- riding out an outage

    def _guarded(self, action: Callable[[], None], rerun: bool = False) -> None:
        """Run `action`; if the database went away, recover (see the module docstring) and, with
        `rerun`, run it again (an outcome needs not: recovering writes every kept one)."""
        try:
            action()
            return
        except (_Lost, psycopg.OperationalError, OperationalError) as exc:
            cause: BaseException = exc
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            cause = exc
        self._recover(cause)
        if rerun:
            self._guarded(action, rerun=True)

    def _recover(self, cause: BaseException) -> None:
        """Reconnect, write every kept outcome again, refresh the batch's claim; give up after
        `outage_wait` seconds."""
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        log.warning("the database went away while recording outcomes (%s); %d outcome(s) kept, "
                    "nothing more is sent until they are written", first, len(self.unconfirmed))
        started, delay = time.monotonic(), FIRST_RETRY
        while True:
            self._discard()
            try:
                if self._engine is not None:
                    self._open()
                    for delivery_id, values in list(self.unconfirmed.items()):
                        self._send(delivery_id, values)
                    self._read_answer()
                else:
                    for delivery_id, values in list(self.unconfirmed.items()):
                        self._execute(_outcome_statement(delivery_id, values))
                self._refresh(self.claimed, utcnow())
                self.recoveries += 1
                log.warning("the database is back: %d outcome(s) written again", len(self.unconfirmed))
                return
            except (_Lost, psycopg.OperationalError, DBAPIError) as exc:
                if time.monotonic() - started >= self.outage_wait:
                    raise RecordingLost(
                        f"the database stayed away {self.outage_wait:g} s (DIGEST_DATABASE_OUTAGE_WAIT): "
                        f"{len(self.unconfirmed)} accepted message(s) not recorded will be sent again after "
                        f"DIGEST_SENDING_TIMEOUT (delivery ids {sorted(self.unconfirmed)[:20]}): {exc}"
                    ) from None
                self.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)

    # ---------------------------------------------------------------- what the sender calls

    def __call__(self, delivery_id: int, **values) -> None:
        self.unconfirmed[delivery_id] = values
        if self._pgconn is not None:
            self._guarded(lambda: self._send(delivery_id, values))
        else:  # a committed transaction each: durable once it returns
            self._guarded(lambda: self._execute(_outcome_statement(delivery_id, values)))
            self.unconfirmed.clear()

    def wait(self) -> None:
        """Read the answer to the outcome sent last; raise if PostgreSQL refused it."""
        if self._pgconn is not None:
            self._guarded(self._read_answer)

    def confirm(self) -> None:
        """Make every outcome so far durable: one transaction committed synchronously flushes the
        WAL up to it, and so every commit before it. Only then are the kept outcomes let go."""
        if self._pgconn is not None:
            def barrier() -> None:
                self._read_answer()
                # The transaction must write WAL: one that does not (txid_current() alone) commits
                # without a flush whatever synchronous_commit says. A transactional logical
                # message is one WAL record, at any wal_level, touching no table.
                result = self._pgconn.exec_(b"BEGIN; SET LOCAL synchronous_commit TO on; "
                                            b"SELECT pg_logical_emit_message(true, 'digest', ''); COMMIT")
                if result.status != pq.ExecStatus.COMMAND_OK:
                    self._raise_for(result.get_error_message(), "confirming the outcomes failed",
                                    result.error_field(pq.DiagnosticField.SQLSTATE))

            while self.unconfirmed:
                before = self.recoveries
                self._guarded(barrier)
                if self.recoveries == before:  # (after a recovery the barrier is made again)
                    break
        self.unconfirmed.clear()

    def _execute(self, statement) -> None:
        """On the recorder's own autocommit connection when it has one, else in a short transaction."""
        if self._connection is not None:
            self._read_answer()
            self._connection.execute(statement)
            return
        with self.factory() as session, session.begin():
            session.execute(statement)

    def _refresh(self, ids: Sequence[int], at: datetime) -> None:
        if ids:
            self._execute(
                update(Delivery)
                .where(Delivery.id.in_(list(ids)), Delivery.status == DeliveryStatus.sending)
                .values(claimed_at=at)
                .execution_options(synchronize_session=False)
            )

    def refresh_claims(self, ids: Sequence[int], at: datetime) -> None:
        self._guarded(lambda: self._refresh(ids, at), rerun=True)

    def suppress(self, email: str, reason: str) -> None:
        self._guarded(lambda: suppress(self.factory, email, reason), rerun=True)

    def close(self) -> None:
        if self._connection is None:
            return
        try:
            self._read_answer()
            for name in self._prepared.values():
                self._connection.exec_driver_sql(f"DEALLOCATE {name.decode()}")
            self._connection.exec_driver_sql("RESET synchronous_commit")
        except Exception:  # a broken connection is discarded, not tidied
            self._discard()
            return
        finally:
            self._prepared.clear()
        self._connection.close()
        self._connection = self._pgconn = None


def _outcome_statement(delivery_id: int, values: dict):
    return (
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.sending)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
