"""Alembic environment: runs against the engine the caller hands over (see digest.db.upgrade)."""

from alembic import context

from digest.db import get_engine
from digest.models import Base

config = context.config
engine = config.attributes.get("engine") or get_engine()


def _sqlite_foreign_keys(connection, on: bool) -> None:
    # Batch migrations copy a SQLite table, drop the old one and rename the copy: with foreign keys
    # enforced, the drop would cascade to every row that refers to the table (alembic's batch
    # docs). The pragma is ignored inside a transaction, so it is set on the raw connection first.
    if connection.dialect.name == "sqlite":
        connection.connection.driver_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


with engine.connect() as connection:
    _sqlite_foreign_keys(connection, on=False)
    try:
        with connection.begin():
            context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
            context.run_migrations()
            if connection.dialect.name == "sqlite":
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"the migration left rows whose references point nowhere: {broken[:5]}")
    finally:
        _sqlite_foreign_keys(connection, on=True)
