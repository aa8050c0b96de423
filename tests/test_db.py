import os
import sqlite3
import uuid
from datetime import date

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from digest.db import alembic_config, current_revision, ensure_schema, head_revision, make_engine, session_scope
from digest.errors import SchemaError
from digest.models import Base, Delivery, Subscriber
from tests.conftest import BACKEND, POSTGRES_ADMIN_URL


def test_an_empty_database_is_created_on_first_use(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/new.db")
    ensure_schema(engine)
    assert current_revision(engine) == head_revision()


def test_an_outdated_schema_says_what_to_run(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    ensure_schema(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    with pytest.raises(SchemaError, match="run `digest db upgrade`"):
        ensure_schema(engine)


def test_a_foreign_database_is_not_touched(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/other.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id INTEGER)"))
    with pytest.raises(SchemaError, match="no migration history"):
        ensure_schema(engine)


def _other_writer_gets_the_lock(path) -> bool:
    other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


def test_on_sqlite_a_write_unit_takes_the_write_lock_with_its_first_statement(tmp_path):
    """Even when it reads first: in WAL mode a read transaction that later writes fails at once
    ("database is locked") if anyone wrote meanwhile, whatever the busy timeout."""
    path = tmp_path / "lock.db"
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    with Session(engine) as session, session.begin():
        session.execute(text("SELECT 1"))
        assert not _other_writer_gets_the_lock(path)
    with session_scope(lambda: Session(engine)) as session:
        session.execute(text("SELECT 1"))
        assert not _other_writer_gets_the_lock(path)
    assert _other_writer_gets_the_lock(path)


def test_on_sqlite_a_read_only_unit_never_takes_the_write_lock(tmp_path):
    path = tmp_path / "read.db"
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    with Session(engine) as session:  # a session used without begin(): this code's read units
        session.execute(text("SELECT count(*) FROM subscribers"))
        assert _other_writer_gets_the_lock(path)
    with session_scope(lambda: Session(engine), read_only=True) as session:
        session.execute(text("SELECT count(*) FROM subscribers"))
        assert _other_writer_gets_the_lock(path)


@pytest.fixture
def empty_database(tmp_path):
    """A database of its own on the store under test, for migrations run from the start."""
    if BACKEND == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/migrated.db")
        yield engine
        engine.dispose()
        return
    name = f"digest_test_migration_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(f"{base}/{name}")
    yield engine
    engine.dispose()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrading_to_link_secrets_keeps_every_row_and_gives_each_subscriber_a_secret(empty_database):
    command.upgrade(alembic_config(empty_database), "0001_initial")
    columns = ("email, status, timezone, delivery_hour, frequency, weekday, max_papers, notify_empty, token_version, "
               "created_at, confirmations_sent")
    with empty_database.begin() as connection:
        for n, version in ((1, 1), (2, 4)):
            connection.execute(text(
                f"INSERT INTO subscribers (id, {columns}) VALUES (:id, :email, 'active', 'UTC', 7, 'daily', 0, 10, "
                "false, :version, '2026-11-01 07:00:00', 0)"), {"id": n, "email": f"r{n}@example.org", "version": version})
            connection.execute(text("INSERT INTO topics (subscriber_id, query, position) VALUES (:id, 'agents', 0)"), {"id": n})
            connection.execute(text(
                "INSERT INTO deliveries (subscriber_id, edition, status, attempts, created_at, paper_ids) "
                "VALUES (:id, '2026-11-01', 'sent', 1, '2026-11-01 07:00:00', '[]')"), {"id": n})
    command.upgrade(alembic_config(empty_database), "head")
    with empty_database.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, link_secret, legacy_token_version FROM subscribers ORDER BY id")).all()
        assert [(r.id, r.legacy_token_version) for r in rows] == [(1, 1), (2, 4)]
        assert all(len(r.link_secret) == 16 for r in rows) and rows[0].link_secret != rows[1].link_secret
        # Copying a SQLite table must not cascade to the rows that refer to it.
        assert connection.execute(text("SELECT subscriber_id FROM topics ORDER BY subscriber_id")).scalars().all() == [1, 2]
        assert connection.execute(text("SELECT subscriber_id FROM deliveries ORDER BY 1")).scalars().all() == [1, 2]
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_ids_are_never_reused_after_the_newest_row_is_deleted(empty_database):
    command.upgrade(alembic_config(empty_database), "head")
    with Session(empty_database) as session, session.begin():
        session.add_all([Subscriber(email="newest@example.org"), Delivery(edition=date(2026, 11, 1))])
    with Session(empty_database) as session, session.begin():
        deleted = (session.scalar(select(func.max(Subscriber.id))), session.scalar(select(func.max(Delivery.id))))
        session.execute(text("DELETE FROM deliveries"))
        session.execute(text("DELETE FROM subscribers"))
    with Session(empty_database) as session, session.begin():
        session.add_all([Subscriber(email="following@example.org"), Delivery(edition=date(2026, 11, 2))])
        session.flush()
        assert session.scalar(select(func.max(Subscriber.id))) > deleted[0]
        assert session.scalar(select(func.max(Delivery.id))) > deleted[1]
