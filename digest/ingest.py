"""Store what the sources returned: one row per arXiv id, fields merged across sources.

Merge rules, so that a second fetch of the same day changes nothing unless a source did:
- title, abstract, authors, published date: the first non-empty value wins (sources disagree on
  punctuation; flip-flopping between them would mark every paper "updated" on every fetch);
- upvotes: the latest Hugging Face figure;
- code and project links: filled when missing, replaced when a source reports a new one;
- categories, keywords, sources: union, in first-seen order.
A paper's edition is the UTC date it first entered the store and never changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.models import Paper
from digest.sources.base import FetchResult, PaperRecord

log = logging.getLogger(__name__)
CHUNK = 500


@dataclass
class IngestCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    new_ids: list[str] = field(default_factory=list)

    def add(self, other: IngestCounts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.skipped += other.skipped
        self.new_ids.extend(other.new_ids)


def _union(current: list, extra: Iterable) -> list:
    merged = list(current)
    merged.extend(item for item in extra if item not in merged)
    return merged


def merge_into(paper: Paper, record: PaperRecord) -> bool:
    """Apply one source's view of a paper; True when a stored field changed."""
    changes: dict[str, object] = {}
    for name in ("title", "abstract", "authors", "published_at"):
        if not getattr(paper, name) and getattr(record, name):
            changes[name] = getattr(record, name)
    if record.upvotes is not None and record.upvotes != paper.upvotes:
        changes["upvotes"] = record.upvotes
    for name in ("github_repo", "project_page"):
        if getattr(record, name) and getattr(record, name) != getattr(paper, name):
            changes[name] = getattr(record, name)
    for name, extra in (("categories", record.categories), ("keywords", record.keywords), ("sources", [record.source])):
        merged = _union(getattr(paper, name) or [], [x for x in extra if x])
        if merged != (getattr(paper, name) or []):
            changes[name] = merged
    for name, value in changes.items():
        setattr(paper, name, value)
    return bool(changes)


def new_paper(record: PaperRecord, edition: date) -> Paper:
    return Paper(
        id=record.id,
        title=record.title,
        abstract=record.abstract,
        authors=list(record.authors),
        categories=list(dict.fromkeys(record.categories)),
        published_at=record.published_at,
        upvotes=record.upvotes or 0,
        github_repo=record.github_repo,
        project_page=record.project_page,
        keywords=list(dict.fromkeys(record.keywords)),
        sources=[record.source] if record.source else [],
        edition=edition,
    )


def store_papers(session: Session, records: list[PaperRecord], now: datetime | None = None,
                 edition_of: Callable[[PaperRecord], date] | None = None) -> IngestCounts:
    """Upsert records; the caller commits. Records for one id (from several sources) merge in order.
    `edition_of`: the edition of a new paper that did not come from a fetch (a lookup by id), in
    place of today's."""
    now = now or datetime.now(timezone.utc)
    edition = now.astimezone(timezone.utc).date()
    counts = IngestCounts()
    ids = list(dict.fromkeys(r.id for r in records))
    existing: dict[str, Paper] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        existing.update((p.id, p) for p in session.scalars(select(Paper).where(Paper.id.in_(chunk))))
    touched: set[str] = set()
    created: set[str] = set()
    for record in records:
        paper = existing.get(record.id)
        if paper is None:
            paper = existing[record.id] = new_paper(record, edition_of(record) if edition_of else edition)
            session.add(paper)
            created.add(record.id)
            counts.new_ids.append(record.id)
        elif merge_into(paper, record):
            touched.add(record.id)
    counts.new = len(created)
    counts.updated = len(touched - created)
    counts.unchanged = len(ids) - counts.new - counts.updated
    return counts


def store_fetch(session: Session, result: FetchResult, now: datetime | None = None) -> IngestCounts:
    for reason in result.skipped:
        log.warning("skipped: %s", reason)
    counts = store_papers(session, result.papers, now)
    counts.skipped = len(result.skipped)
    return counts
