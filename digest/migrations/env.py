"""Alembic environment: runs against the engine the caller hands over (see digest.db.upgrade)."""

from alembic import context

from digest.db import get_engine
from digest.models import Base

config = context.config
engine = config.attributes.get("engine") or get_engine()

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
