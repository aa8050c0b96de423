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


ATOM_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom"
      xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">
  <title type="html">ArXiv Query: search_query=cat:cs.LG</title>
  <id>http://arxiv.org/api/stand-in</id>
  <updated>2026-11-26T00:00:00-05:00</updated>
  <opensearch:totalResults>{total}</opensearch:totalResults>
  <opensearch:startIndex>{start}</opensearch:startIndex>
  <opensearch:itemsPerPage>{per_page}</opensearch:itemsPerPage>
"""


def arxiv_entry(record: dict) -> str:
    """One Atom `entry` of the arXiv API, shaped as export.arxiv.org answers it (shared/sources.md)."""
    from xml.sax.saxutils import escape, quoteattr

    categories = record.get("categories") or ["cs.LG"]
    authors = "".join(f"<author><name>{escape(a)}</name></author>" for a in record.get("authors", []))
    terms = "".join(f'<category term={quoteattr(c)} scheme="http://arxiv.org/schemas/atom"/>' for c in categories)
    return f"""  <entry>
    <id>http://arxiv.org/abs/{record["id"]}v1</id>
    <updated>2026-11-25T18:20:03Z</updated>
    <published>{record.get("published_at", "2026-11-25T17:59:00Z")}</published>
    <title>{escape(record["title"])}</title>
    <summary>{escape(record.get("abstract", ""))}</summary>
    {authors}
    <link href="http://arxiv.org/abs/{record["id"]}v1" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/{record["id"]}v1" rel="related" type="application/pdf"/>
    <arxiv:primary_category term={quoteattr(categories[0])} scheme="http://arxiv.org/schemas/atom"/>
    {terms}
  </entry>
"""


def arxiv_feed(records: list[dict], total: int | None = None, start: int = 0, per_page: int = 200) -> bytes:
    """An arXiv API answer: one page of entries and the totalResults the server claims."""
    head = ATOM_HEAD.format(total=len(records) if total is None else total, start=start, per_page=per_page)
    return (head + "".join(arxiv_entry(r) for r in records) + "</feed>\n").encode()
