"""Celery tasks: each parses its arguments, calls one function of digest/, returns a summary."""

from __future__ import annotations

import logging

from digest.config import get_settings
from digest.db import ensure_schema, get_engine, session_factory
from digest.errors import SourceError
from digest.fetch import fetch_papers
from workers.app import app

log = logging.getLogger(__name__)


def _sessions():
    settings = get_settings()
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    return settings, session_factory(engine)


@app.task(name="digest.fetch")
def fetch() -> dict:
    """Fetch every configured source. Sources retry their own transient errors; a source that
    still fails makes the task fail (visible in monitoring) after the others were stored."""
    settings, factory = _sessions()
    report = fetch_papers(factory, settings)
    summary = {
        "new": report.counts.new,
        "updated": report.counts.updated,
        "unchanged": report.counts.unchanged,
        "skipped": report.counts.skipped,
        "errors": report.errors,
    }
    log.info("fetch: %s", report.summary())
    if report.errors:
        raise SourceError("; ".join(report.errors))
    return summary
