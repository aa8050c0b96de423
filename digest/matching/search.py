"""`digest search`: what a topic matches in the store, through the same code that builds digests."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.matching.index import EditionIndex
from digest.matching.query import parse_query
from digest.matching.rank import rank
from digest.matching.results import Match
from digest.models import Paper


def search(session: Session, query: str, edition: date | None = None, limit: int | None = None) -> list[Match]:
    """Every paper of the store (or of one edition) that the query matches, in digest order.
    Raises QueryError before touching the store when the query does not parse."""
    topic = parse_query(query).text
    statement = select(Paper).order_by(Paper.id)
    if edition is not None:
        statement = statement.where(Paper.edition == edition)
    papers = session.scalars(statement).all()
    return rank(EditionIndex.build(papers), [topic], limit)
