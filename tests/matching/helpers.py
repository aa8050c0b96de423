"""Paper-like objects for matching tests: the index takes anything with Paper's attributes."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from tests.factories import sample_records


def paper(**fields) -> SimpleNamespace:
    values = {
        "id": "2611.00001",
        "title": "",
        "abstract": "",
        "authors": [],
        "categories": [],
        "upvotes": 0,
        "published_at": datetime(2026, 11, 25, tzinfo=timezone.utc),
    }
    values.update(fields)
    return SimpleNamespace(**values)


def sample_papers() -> list[SimpleNamespace]:
    return [
        paper(
            id=record["id"],
            title=record["title"],
            abstract=record.get("abstract", ""),
            authors=record.get("authors", []),
            categories=record.get("categories", []),
            upvotes=record.get("upvotes", 0),
            published_at=datetime.fromisoformat(record["published_at"]),
        )
        for record in sample_records()
    ]
