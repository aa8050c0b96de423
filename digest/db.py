"""Engine and sessions, and the check that the schema matches the code.

Every function of the library takes a Session; the CLI, the web app and the workers open one
with `session_scope()` and commit once at the end of the unit of work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.session import SessionTransactionOrigin

from digest.config import get_settings
from digest.errors import ConfigError, SchemaError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


SQLITE_BUSY_TIMEOUT = 30  # seconds a SQLite writer waits for the write lock before giving up
_BEGIN = "digest_sqlite_begin"  # connection.info: how the transaction just begun is to start
_READS = ("SELECT", "PRAGMA", "EXPLAIN")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    """SQLite with SQLAlchemy, not pysqlite, opening transactions (the documented recipe:
    otherwise SAVEPOINTs silently do not nest), in WAL mode so that the web app reads while a
    send writes, and with every write unit taking the write lock up front.

    Why up front: in WAL mode a deferred transaction that read first and writes later fails at
    once with "database is locked" (SQLITE_BUSY, the busy timeout does not apply) whenever another
    connection wrote meanwhile. So a unit of work begun explicitly (`session.begin()`,
    `session_scope()`, `engine.begin()` followed by a write) starts with BEGIN IMMEDIATE and
    waits up to SQLITE_BUSY_TIMEOUT for the lock; a session used without begin() (this code's
    read-only units) starts with a plain BEGIN when its first statement reads, and never takes
    the write lock."""
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection):
        # Not emitted yet: the first statement (or the session that began it) tells which BEGIN.
        connection.info[_BEGIN] = connection.get_execution_options().get(_BEGIN, "lazy")

    @event.listens_for(engine, "before_cursor_execute")
    def _sqlite_emit_begin(connection, cursor, statement, parameters, context, executemany):
        mode = connection.info.pop(_BEGIN, None)
        if mode is None:
            return
        if mode == "lazy":
            mode = "DEFERRED" if statement.lstrip().upper().startswith(_READS) else "IMMEDIATE"
        cursor.execute(f"BEGIN {mode}")

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _sqlite_end(connection):
        connection.info.pop(_BEGIN, None)  # a transaction that ran no statement never began

    return engine


@event.listens_for(Session, "after_begin")
def _write_units_lock_up_front(session: Session, transaction, connection) -> None:
    """A session transaction begun explicitly is a unit of work that writes: on SQLite it takes
    the write lock with its first statement, whatever that statement is."""
    if transaction.origin == SessionTransactionOrigin.BEGIN and connection.info.get(_BEGIN) == "lazy":
        connection.info[_BEGIN] = "IMMEDIATE"


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url or get_settings().database_url)


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(sessions: Callable[[], Session] | None = None, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error. It is begun explicitly, so
    on SQLite it holds the write lock from its first statement: keep it short, and never wait on
    the network inside it. `read_only`: a unit that only reads, and never takes that lock."""
    session = (sessions or session_factory())()
    try:
        if not read_only and not session.in_transaction():  # (tests hand in a session already begun)
            session.begin()
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s")
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with connected(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def connected(engine: Engine) -> Iterator:
    """A connection, or a ConfigError naming DIGEST_DATABASE_URL that says what to do."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        folder = Path(url.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise ConfigError(f"DIGEST_DATABASE_URL: the folder {folder} of the SQLite file does not exist: "
                              "create it, or point DIGEST_DATABASE_URL at another path")
    try:
        connection = engine.connect()
    except OperationalError as exc:
        raise ConfigError(_connection_error(url, exc)) from None
    with connection:
        yield connection


def _connection_error(url, exc: OperationalError) -> str:
    reason = " ".join(str(exc.orig).split()) if exc.orig is not None else str(exc)
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if url.get_backend_name() == "sqlite":
        return f"DIGEST_DATABASE_URL: cannot open the SQLite file {url.database}: {reason}"
    if "does not exist" in reason and url.database and f'"{url.database}"' in reason:
        return (f"DIGEST_DATABASE_URL: database {url.database} does not exist on {where}: create it "
                f"(createdb -h {url.host or 'localhost'} {url.database}) or fix the URL")
    if "authentication failed" in reason or "no password supplied" in reason:
        return f"DIGEST_DATABASE_URL: {where} refused the login of user {url.username}: check the user and password"
    reason = reason.rsplit(" failed: ", 1)[-1]  # psycopg repeats the address before the reason
    return f"DIGEST_DATABASE_URL: cannot connect to PostgreSQL at {where} ({reason}): is it running, and is the URL right?"


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; return (before, after)."""
    before = current_revision(engine)  # (a database that cannot be reached stops here, in one line)
    command.upgrade(alembic_config(engine), "head")
    return before, head_revision()


def ensure_schema(engine: Engine) -> None:
    """Create an empty database on first use; refuse to run against an outdated one."""
    current = current_revision(engine)
    if current == head_revision():
        return
    if current is None:
        if inspect(engine).get_table_names():
            raise SchemaError(
                "the database has tables but no migration history: point DIGEST_DATABASE_URL at an empty database"
            )
        upgrade(engine)
        return
    raise SchemaError(f"the database schema is at {current}, this code needs {head_revision()}: run `digest db upgrade`")
