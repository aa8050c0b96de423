"""Readiness: the database answers and its schema is the one this code needs, and the broker
answers when one is configured. `/readyz` and `digest check` ask the same questions.

A failure is named with what to do, never with the URL or a password in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from alembic.runtime.migration import MigrationContext
from kombu import Connection
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.db import head_revision

BROKER_TIMEOUT = 2.0  # seconds: a probe must answer before the orchestrator's own timeout


@dataclass
class Readiness:
    failures: dict[str, str] = field(default_factory=dict)  # check -> what is wrong
    passed: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {"ready": self.ready, "checks": {**{name: "ok" for name in self.passed}, **self.failures}}


def database_problem(session: Session) -> str | None:
    """None when the database answers and is migrated to this code's newest revision."""
    try:
        session.execute(text("SELECT 1"))
        current = MigrationContext.configure(session.connection()).get_current_revision()
    except SQLAlchemyError as exc:
        session.rollback()  # the unit of work ends cleanly, and the pool forgets the dead connection
        return f"the database does not answer ({type(getattr(exc, 'orig', None) or exc).__name__})"
    head = head_revision()
    if current != head:
        return f"the schema is at {current or 'nothing'}, this code needs {head}: run `digest db upgrade`"
    return None


def broker_problem(url: str, timeout: float = BROKER_TIMEOUT) -> str | None:
    """None when the Celery broker accepts a connection."""
    try:
        with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - kombu raises the transport's own errors
        host = urlsplit(url).hostname or "?"
        return f"the broker at {host} does not answer ({type(exc).__name__})"
    return None


def readiness(session: Session, settings: Settings) -> Readiness:
    result = Readiness()
    problem = database_problem(session)
    if problem:
        result.failures["database"] = problem
    else:
        result.passed.append("database")
    if settings.broker_configured:
        problem = broker_problem(settings.broker_url)
        if problem:
            result.failures["broker"] = problem
        else:
            result.passed.append("broker")
    return result
