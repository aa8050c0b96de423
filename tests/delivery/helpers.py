"""Shared set-up for delivery tests: the sample's papers in chosen editions, due subscribers."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from digest.models import Paper
from tests.factories import make_subscriber, sample_records

UTC = timezone.utc
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # edition 2026-11-26 closed, 2026-11-27 open
EDITION = date(2026, 11, 26)
LONG_AGO = datetime(2026, 10, 1, tzinfo=UTC)
FIELDS = ("id", "title", "abstract", "authors", "categories", "upvotes", "github_repo", "project_page", "keywords")


def add_sample_papers(session, edition: date, start: int = 0, stop: int | None = None) -> list[Paper]:
    papers = []
    for record in sample_records()[start:stop]:
        values = {k: record[k] for k in FIELDS if k in record}
        published = record.get("published_at")
        values["published_at"] = datetime.fromisoformat(published.replace("Z", "+00:00")) if published else None
        papers.append(Paper(**values, sources=["file"], edition=edition))
    session.add_all(papers)
    session.flush()
    return papers


def due_subscriber(session, email: str | None = None, topics=("pretraining",), **fields):
    fields.setdefault("confirmed_at", LONG_AGO)
    fields.setdefault("next_due_at", NOW - timedelta(minutes=1))
    return make_subscriber(session, email, list(topics), **fields)
