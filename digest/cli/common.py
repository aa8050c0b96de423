"""What every command needs: validated settings and a database with the right schema."""

from __future__ import annotations

from sqlalchemy import Engine

from digest.config import Settings, get_settings
from digest.db import ensure_schema, get_engine, session_factory


def settings_and_engine() -> tuple[Settings, Engine]:
    settings = get_settings()
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    return settings, engine


def sessions():
    settings, engine = settings_and_engine()
    return settings, session_factory(engine)
