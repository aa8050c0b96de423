"""What the admin console shows: plain values read with indexed queries, never more rows than a
page holds. The web layer only renders them."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from digest.models import (
    AuditEntry,
    Delivery,
    DeliveryStatus,
    FetchRun,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from digest.operations.metrics import oldest_due

EDITIONS_SHOWN = 7
GROWTH_DAYS = 14
LATE_AFTER = timedelta(minutes=30)  # a digest due this long ago and still not sent is late
PAGE = 50


@dataclass
class EditionRow:
    edition: date
    papers: int
    counts: dict[str, int]

    @property
    def pending(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("sending", 0)

    @property
    def bounce_rate(self) -> float | None:
        """Bounced among the digests the server answered for (sent, bounced, failed)."""
        answered = sum(self.counts.get(s, 0) for s in ("sent", "bounced", "failed"))
        return self.counts.get("bounced", 0) / answered if answered else None


@dataclass
class Overview:
    editions: list[EditionRow]
    late: int
    oldest_due: datetime | None
    fetch_last: dict[str, FetchRun]  # source -> its newest run
    fetch_runs: list[FetchRun]
    subscribers: dict[str, int]
    growth: list[tuple[date, int, int]]  # day, new subscribers, unsubscribes
    audit: list[AuditEntry]
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def edition_rows(session: Session, limit: int = EDITIONS_SHOWN) -> list[EditionRow]:
    editions = list(session.scalars(select(Paper.edition).distinct().order_by(Paper.edition.desc()).limit(limit)))
    if not editions:
        return []
    papers = dict(session.execute(
        select(Paper.edition, func.count()).where(Paper.edition >= editions[-1]).group_by(Paper.edition)
    ).all())
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    for edition, status, n in session.execute(
        select(Delivery.edition, Delivery.status, func.count())
        .where(Delivery.edition >= editions[-1]).group_by(Delivery.edition, Delivery.status)
    ):
        counts[edition][status.value] = n
    return [EditionRow(e, papers.get(e, 0), counts.get(e, {})) for e in editions]


def _per_utc_day(session: Session, column, since: datetime) -> Counter:
    # PostgreSQL's date() of a timestamptz follows the server's TimeZone: ask for the UTC day.
    day = func.date(func.timezone("UTC", column)) if session.get_bind().dialect.name == "postgresql" else func.date(column)
    return Counter({_day(d): n for d, n in session.execute(
        select(day, func.count()).where(column >= since).group_by(day)
    )})


def growth(session: Session, now: datetime, days: int = GROWTH_DAYS) -> list[tuple[date, int, int]]:
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    joined = _per_utc_day(session, Subscriber.created_at, since)
    left = _per_utc_day(session, Subscriber.unsubscribed_at, since)
    return [(day, joined[day], left[day]) for day in (since.date() + timedelta(days=i) for i in range(days))][::-1]


def fetch_history(session: Session, limit: int = 30) -> tuple[dict[str, FetchRun], list[FetchRun]]:
    runs = list(session.scalars(select(FetchRun).order_by(FetchRun.started_at.desc(), FetchRun.id.desc()).limit(limit)))
    newest: dict[str, FetchRun] = {}
    for run in runs:
        newest.setdefault(run.source, run)
    return newest, runs


def overview(session: Session, now: datetime | None = None) -> Overview:
    now = now or datetime.now(timezone.utc)
    late = session.scalar(
        select(func.count()).select_from(Delivery)
        .where(Delivery.status.in_((DeliveryStatus.pending, DeliveryStatus.sending)),
               Delivery.created_at < now - LATE_AFTER, Delivery.subscriber_id.is_not(None))
    ) or 0
    by_status = dict(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    newest, runs = fetch_history(session)
    return Overview(
        editions=edition_rows(session), late=late, oldest_due=oldest_due(session, now),
        fetch_last=newest, fetch_runs=runs,
        subscribers={s.value: by_status.get(s, 0) for s in SubscriberStatus},
        growth=growth(session, now), audit=audit_entries(session, 20), now=now,
    )


def audit_entries(session: Session, limit: int = 200) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)))


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_subscribers(session: Session, query: str = "", before: int | None = None, limit: int = PAGE) -> list[Subscriber]:
    """By part of the address or of a topic, newest first; `before` pages by id."""
    statement = select(Subscriber).options(selectinload(Subscriber.topics)).order_by(Subscriber.id.desc()).limit(limit)
    query = query.strip()
    if query:
        pattern = _like(query.lower())
        by_topic = select(Topic.subscriber_id).where(func.lower(Topic.query).like(pattern, escape="\\"))
        statement = statement.where(or_(Subscriber.email.like(pattern, escape="\\"), Subscriber.id.in_(by_topic)))
    if before is not None:
        statement = statement.where(Subscriber.id < before)
    return list(session.scalars(statement))


@dataclass
class SubscriberPage:
    subscriber: Subscriber
    suppression: Suppression | None
    deliveries: list[Delivery]


def subscriber_page(session: Session, subscriber_id: int, limit: int = 100) -> SubscriberPage | None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    deliveries = list(session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber_id).order_by(Delivery.edition.desc()).limit(limit)
    ))
    return SubscriberPage(subscriber, session.get(Suppression, subscriber.email), deliveries)


def problem_deliveries(session: Session, limit: int = 100) -> list[tuple[Delivery, str | None]]:
    """Deliveries given up or refused (failed), and those waiting for a retry after a 4xx."""
    waiting = and_(Delivery.status == DeliveryStatus.pending, Delivery.last_error.is_not(None))
    rows = session.execute(
        select(Delivery, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(or_(Delivery.status == DeliveryStatus.failed, waiting))
        .order_by(Delivery.edition.desc(), Delivery.id.desc()).limit(limit)
    ).all()
    return [(delivery, email) for delivery, email in rows]


def suppressions(session: Session, query: str = "", limit: int = 100) -> list[tuple[Suppression, int | None]]:
    """Suppressed addresses, newest first, with their subscriber's id when there is one."""
    statement = (
        select(Suppression, Subscriber.id)
        .outerjoin(Subscriber, Subscriber.email == Suppression.email)
        .order_by(Suppression.created_at.desc()).limit(limit)
    )
    if query.strip():
        statement = statement.where(Suppression.email.like(_like(query.strip().lower()), escape="\\"))
    return [(suppression, owner) for suppression, owner in session.execute(statement).all()]
