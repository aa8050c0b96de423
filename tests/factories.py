"""Factories for test data: stored papers and subscribers, and source answers in their real shapes."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy.orm import Session

from digest.config import SAMPLE_PAPERS
from digest.models import Paper, Subscriber, SubscriberStatus, Topic

_ids = itertools.count(1)


def sample_records() -> list[dict]:
    """The bundled sample (made from the reference Daily Papers page) in the project's file format."""
    return [json.loads(line) for line in Path(SAMPLE_PAPERS).read_text(encoding="utf-8").splitlines() if line]


def make_paper(session: Session | None = None, **fields) -> Paper:
    n = next(_ids)
    values = {
        "id": f"2611.{n:05d}",
        "title": f"Paper number {n}",
        "abstract": "An abstract.",
        "authors": ["Ana Ruiz", "Bo Li"],
        "categories": ["cs.LG"],
        "published_at": datetime(2026, 11, 25, tzinfo=timezone.utc),
        "upvotes": 0,
        "keywords": [],
        "sources": ["file"],
        "edition": date(2026, 11, 26),
    }
    values.update(fields)
    paper = Paper(**values)
    if session is not None:
        session.add(paper)
        session.flush()
    return paper


def make_subscriber(
    session: Session, email: str | None = None, topics: list[str] = ("pretraining",), **fields
) -> Subscriber:
    n = next(_ids)
    subscriber = Subscriber(
        email=email or f"reader{n}@example.org",
        status=fields.pop("status", SubscriberStatus.active),
        **fields,
    )
    subscriber.topics = [Topic(query=q, position=i) for i, q in enumerate(topics)]
    session.add(subscriber)
    session.flush()
    return subscriber


def hf_item(record: dict, featured: str = "2026-11-26T13:00:00.000Z") -> dict:
    """One /api/daily_papers array item, shaped as Hugging Face answers it (see shared/sources.md)."""
    paper = {
        "id": record["id"],
        "authors": [
            {"_id": f"a{i:023d}", "name": name, "hidden": False} for i, name in enumerate(record.get("authors", []))
        ],
        "publishedAt": record.get("published_at", "2026-11-25T17:59:00.000Z"),
        "submittedOnDailyAt": featured,
        "title": record["title"],
        "summary": record.get("abstract", ""),
        "upvotes": record.get("upvotes", 0),
        "discussionId": f"d{record['id'].replace('.', '')}",
        "ai_summary": "",
        "ai_keywords": record.get("keywords", []),
    }
    if record.get("github_repo"):
        paper["githubRepo"] = record["github_repo"]
        paper["githubStars"] = 12
    if record.get("project_page"):
        paper["projectPage"] = record["project_page"]
    return {
        "paper": paper,
        "publishedAt": featured,
        "title": record["title"],
        "summary": record.get("abstract", ""),
        "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{record['id']}.png",
        "numComments": 0,
        "submittedBy": {"_id": "u1", "fullname": "AK", "name": "akhaliq", "type": "user"},
        "isAuthorParticipating": False,
    }
