"""Editions: a paper's edition is the UTC date it first entered the store, so "new papers" means
"the papers of an edition" everywhere. An edition is closed once its UTC day has ended: no paper
can join it any more.

The match index of an edition is built once per process and kept (`EditionCache`) until the
edition's papers change (their count or their newest `updated_at`): a refetch that updates
upvotes rebuilds it, a page view or a batch of digests does not.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.matching import EditionIndex
from digest.models import Paper


def latest_edition(session: Session) -> date | None:
    return session.scalar(select(func.max(Paper.edition)))


def latest_closed_edition(session: Session, now: datetime) -> date | None:
    """The newest edition whose UTC day has ended."""
    return session.scalar(select(func.max(Paper.edition)).where(Paper.edition < now.astimezone(timezone.utc).date()))


def edition_papers(session: Session, edition: date) -> list[Paper]:
    return list(session.scalars(select(Paper).where(Paper.edition == edition).order_by(Paper.id)))


def edition_paper_count(session: Session, edition: date) -> int:
    return session.scalar(select(func.count()).select_from(Paper).where(Paper.edition == edition)) or 0


@dataclass
class Edition:
    day: date
    version: tuple  # (paper count, newest updated_at): a different version is a different edition
    papers: list[Paper]
    index: EditionIndex


class EditionCache:
    """The papers and match index of the editions a process serves, newest use last, at most
    `keep`. Safe to share between threads: one lock around lookups and rebuilds (matching itself
    is pure Python, so a lock costs no parallelism)."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._editions: OrderedDict[date, Edition] = OrderedDict()
        self.lock = threading.RLock()

    def get(self, session: Session, days: Iterable[date]) -> dict[date, Edition]:
        """The wanted editions that have papers; editions without (weekends, downtime) cost
        nothing: no query, no index."""
        wanted = sorted(set(days))
        if not wanted:
            return {}
        versions = {
            day: (count, updated)
            for day, count, updated in session.execute(
                select(Paper.edition, func.count(), func.max(Paper.updated_at))
                .where(Paper.edition.in_(wanted))
                .group_by(Paper.edition)
            )
        }
        with self.lock:
            return {day: self._edition(session, day, versions[day]) for day in wanted if day in versions}

    def cached(self, day: date) -> Edition | None:
        return self._editions.get(day)

    def _edition(self, session: Session, day: date, version: tuple) -> Edition:
        cached = self._editions.get(day)
        if cached is not None and cached.version == version:
            self._editions.move_to_end(day)
            return cached
        papers = edition_papers(session, day)
        edition = Edition(day, version, papers, EditionIndex.build(papers))
        self._editions[day] = edition
        while len(self._editions) > self.keep:
            self._editions.popitem(last=False)
        return edition
