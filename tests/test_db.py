import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from digest.db import current_revision, ensure_schema, head_revision, make_engine, session_scope
from digest.errors import SchemaError


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
