"""Typed SQLAlchemy 2 models: every table the service keeps.

Papers are keyed by arXiv id without version. `edition` is the UTC date on which a paper first
entered this service: "new papers" means "papers of an edition" everywhere (fetch, search, send).
"""

from __future__ import annotations

import enum
import secrets
from datetime import date, datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_link_secret() -> str:
    """A subscriber's link secret: 64 random bits as hex (the migration writes the same). It tells
    one row from another that later got its id; links stay unforgeable by their signature."""
    return secrets.token_hex(8)


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes on both PostgreSQL and SQLite (which forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict: JSON, list: JSON}


class Paper(Base):
    __tablename__ = "papers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # arXiv id, no version
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list] = mapped_column(JSON, default=list)  # names, in order
    categories: Mapped[list] = mapped_column(JSON, default=list)
    published_at: Mapped[datetime | None]
    upvotes: Mapped[int] = mapped_column(Integer, default=0)
    github_repo: Mapped[str | None] = mapped_column(Text)
    project_page: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[list] = mapped_column(JSON, default=list)  # Hugging Face ai_keywords
    sources: Mapped[list] = mapped_column(JSON, default=list)  # e.g. ["hf", "arxiv"]
    edition: Mapped[date] = mapped_column(Date, index=True)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def abs_url(self) -> str:
        return f"https://arxiv.org/abs/{self.id}"

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.id}"

    @property
    def hf_url(self) -> str:
        return f"https://huggingface.co/papers/{self.id}"

    def __repr__(self) -> str:
        return f"Paper({self.id!r}, {self.title[:40]!r})"


class SubscriberStatus(str, enum.Enum):
    pending = "pending"  # subscribed, confirmation not yet clicked: receives nothing else
    active = "active"
    unsubscribed = "unsubscribed"


class Frequency(str, enum.Enum):
    daily = "daily"
    weekly = "weekly"


class Subscriber(Base):
    __tablename__ = "subscribers"
    # Ids are never reused (SQLite would otherwise hand a deleted row's id to the next subscriber),
    # so nothing that names an id (a link, a Message-ID, a log line) can point at someone else.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalised
    status: Mapped[SubscriberStatus] = mapped_column(
        Enum(SubscriberStatus, native_enum=False, length=16), default=SubscriberStatus.pending, index=True
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    delivery_hour: Mapped[int] = mapped_column(Integer, default=7)
    frequency: Mapped[Frequency] = mapped_column(
        Enum(Frequency, native_enum=False, length=16), default=Frequency.daily
    )
    weekday: Mapped[int] = mapped_column(Integer, default=0)  # 0 = Monday, for weekly digests
    max_papers: Mapped[int] = mapped_column(Integer, default=10)
    notify_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumping it invalidates every link sent before (settings, unsubscribe, view).
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # growth per day
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    confirmation_sent_at: Mapped[datetime | None]
    # Confirmations sent within the hour after confirmation_sent_at's window opened: caps how
    # many a stranger can make us send to one address by repeating the subscribe form.
    confirmations_sent: Mapped[int] = mapped_column(Integer, default=0)
    # Next UTC instant at which a digest may be due; lets `dispatch` pick who is due with one
    # indexed range query instead of evaluating every subscriber's time zone.
    next_due_at: Mapped[datetime | None] = mapped_column(index=True)
    # In every link (digest/tokens.py): a link works only while the row it was made for holds the
    # same secret. A new row gets a new one; rotate_tokens (resubscribe) replaces it.
    link_secret: Mapped[str] = mapped_column(String(32), default=new_link_secret)
    # The token_version of a row that existed before links carried the secret (migration
    # 0003_link_secrets): its unsubscribe links from before still work, until rotate_tokens.
    legacy_token_version: Mapped[int | None]
    # Relevance (digest/relevance): the reader's two choices, and a counter bumped on every change
    # of their marks, so that a reader's model is refitted only when their marks changed.
    learn_from_feedback: Mapped[bool] = mapped_column(Boolean, default=True)
    suggest_beyond_topics: Mapped[bool] = mapped_column(Boolean, default=True)
    feedback_version: Mapped[int] = mapped_column(Integer, default=0)

    topics: Mapped[list[Topic]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", order_by="Topic.position"
    )

    def __repr__(self) -> str:
        return f"Subscriber({self.id}, {self.email!r}, {self.status.value})"


class Topic(Base):
    __tablename__ = "topics"
    __table_args__ = (UniqueConstraint("subscriber_id", "query"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    query: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer, default=0)

    subscriber: Mapped[Subscriber] = relationship(back_populates="topics")


class Feedback(Base):
    """A reader's mark on one paper: "More like this" (liked) or "Less like this", from an email's
    link or from the "Papers you like" field of the settings page (source "settings"). One row per
    reader and paper: pressing the other button switches it, undo deletes it."""

    __tablename__ = "feedback"

    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True)
    paper_id: Mapped[str] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True, index=True)
    liked: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16), default="email")  # "email" or "settings"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryStatus(str, enum.Enum):
    pending = "pending"  # created by dispatch, not yet claimed (or waiting for a retry)
    sending = "sending"  # claimed by one worker; recovered after a timeout if that worker died
    sent = "sent"
    skipped = "skipped"  # nothing matched and the subscriber asked not to be told
    failed = "failed"  # transient failures until given up
    bounced = "bounced"  # permanent failure: address suppressed


class Delivery(Base):
    """The ledger: one row per subscriber and edition, claimed before sending, recorded after."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "edition", name="uq_delivery_subscriber_edition"),
        Index("ix_deliveries_status_next_attempt", "status", "next_attempt_at"),
        # For the console and /metrics: counts per edition and status, the oldest row not yet sent.
        Index("ix_deliveries_edition_status", "edition", "status"),
        Index("ix_deliveries_status_created", "status", "created_at"),
        # Never reused: queued send_batch tasks name rows by id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL once the subscriber deleted their data: the row stays as an anonymous count.
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="SET NULL"))
    edition: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=16), default=DeliveryStatus.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(255))
    paper_ids: Mapped[list] = mapped_column(JSON, default=list)  # what was sent: never twice
    last_error: Mapped[str | None] = mapped_column(Text)


class Suppression(Base):
    """Addresses that must not be mailed (hard bounce, complaint) until they subscribe again."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FetchRun(Base):
    """One source's part of a fetch: when, what it stored, and the error when it failed."""

    __tablename__ = "fetch_runs"
    __table_args__ = (Index("ix_fetch_runs_source_started", "source", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(500))  # as in DIGEST_SOURCES: hf, arxiv:cs.LG, file:PATH
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Every change made in the admin console: who, what, when, to what. The target names a row
    (`subscriber:12`, `delivery:34`) or a keyed hash of an address, never the address itself, so
    that deleting a subscriber leaves nothing of their address behind."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class MetricTotal(Base):
    """A counter's total over every process that ever counted it (digest.counters): each process
    adds what it counted since its last write, so /metrics on any machine shows the sum."""

    __tablename__ = "metric_totals"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # a sample name, e.g. digest_x_total
    labels: Mapped[str] = mapped_column(String(500), primary_key=True, default="")  # JSON object, sorted keys
    value: Mapped[float] = mapped_column(Float, default=0.0)
