"""`/metrics` in the Prometheus text format: the store's state computed at scrape time, and the
totals of what every process counted (digest.counters), read from the store.

Counters across processes and machines: each process (web, every Celery pool process, `digest
send`) adds what it counted since its last write to `metric_totals` every
DIGEST_METRICS_FLUSH_INTERVAL seconds and at exit, one upsert per changed sample. A scrape of any
web process then shows the sum over every process on every machine; a process killed with
SIGKILL loses at most its last interval. prometheus-client's multiprocess mode was not chosen: its
directory of memory-mapped files is summed only by a process on the same host, must be wiped
between runs, and every short-lived `digest send` would leave files behind.

Gauges of the store are counted at scrape time with indexed queries, over the newest
METRIC_EDITIONS editions only (a label per edition forever would grow without end). No address,
topic or token appears in any metric.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest import counters
from digest.config import Settings
from digest.db import get_engine, session_factory, session_scope
from digest.models import Delivery, DeliveryStatus, MetricTotal, Paper, Subscriber, SubscriberStatus, Suppression

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRIC_EDITIONS = 3
UNSENT = (DeliveryStatus.pending, DeliveryStatus.sending)
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


# ---------------------------------------------------------------- writing the counters


def add_totals(session: Session, deltas: dict[counters.Key, float]) -> None:
    """Add each process's deltas to the totals: one upsert, rows in a fixed order so that two
    processes writing at once never wait on each other in a cycle."""
    table = MetricTotal.__table__
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.name, table.c.labels], set_={"value": table.c.value + statement.excluded.value}
    )
    session.execute(statement, [{"name": n, "labels": labels, "value": v} for (n, labels), v in sorted(deltas.items())])


def store_sink(sessions: Callable[[], Session]) -> counters.Sink:
    def write(deltas: dict[counters.Key, float]) -> None:
        with session_scope(sessions) as session:
            add_totals(session, deltas)

    return write


def count_into_store(settings: Settings, sessions: Callable[[], Session] | None = None) -> bool:
    """With DIGEST_METRICS=1, hand this process's counts to the store from now on. The engine is
    made at the first write, so a command that counts nothing never connects for it."""
    if not settings.metrics:
        return False
    if sessions is None:
        def sessions() -> Session:
            return session_factory(get_engine(settings.database_url))()
    counters.start(store_sink(sessions), settings.metrics_flush_interval)
    return True


def stop_counting() -> None:
    """A last write of this process's counts (a worker process that ends)."""
    counters.close()


# ---------------------------------------------------------------- who may scrape


def scrape_allowed(settings: Settings, authorization: str | None) -> bool:
    """With DIGEST_METRICS_TOKEN set, only `Authorization: Bearer TOKEN` may read the metrics."""
    if not settings.metrics_token:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode())


# ---------------------------------------------------------------- the scrape


def _counted_families(session: Session) -> Iterable[Metric]:
    known = counters.families()
    by_sample = {name + suffix: name for name in known for suffix in SUFFIXES}
    families: dict[str, Metric] = {}
    rows = session.execute(select(MetricTotal.name, MetricTotal.labels, MetricTotal.value)).all()
    for name, labels, value in sorted(rows, key=_sample_order):
        family_name = by_sample.get(name)
        if family_name is None:  # written by an older version of the code: not exposed
            continue
        if family_name not in families:
            kind, documentation = known[family_name]
            families[family_name] = Metric(family_name, documentation, kind)
        families[family_name].add_sample(name, json.loads(labels) if labels else {}, value)
    return families.values()


def _sample_order(row) -> tuple:
    # Histogram buckets in increasing `le`, as the text format asks.
    labels = json.loads(row.labels) if row.labels else {}
    le = labels.pop("le", None)
    return row.name, json.dumps(labels, sort_keys=True), float(le) if le is not None else 0.0


def newest_editions(session: Session, limit: int = METRIC_EDITIONS) -> list[date]:
    return list(session.scalars(select(Paper.edition).distinct().order_by(Paper.edition.desc()).limit(limit)))


def oldest_due(session: Session, now: datetime) -> datetime | None:
    """The moment the longest-waiting digest became due: a delivery row not yet sent, or an active
    subscriber whose due time passed with no row made yet (the dispatch is not running)."""
    candidates = [
        session.scalar(select(func.min(Delivery.created_at))
                       .where(Delivery.status == status, Delivery.subscriber_id.is_not(None)))
        for status in UNSENT  # one min() per status: each is a walk of ix_deliveries_status_created
    ]
    candidates.append(session.scalar(
        select(func.min(Subscriber.next_due_at)).where(Subscriber.status == SubscriberStatus.active)
    ))
    due = [moment for moment in candidates if moment is not None and moment <= now]
    return min(due) if due else None


def _store_families(session: Session, now: datetime) -> Iterable[Metric]:
    subscribers = GaugeMetricFamily("digest_subscribers", "Subscribers by status.", labels=["status"])
    by_status = dict(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    for status in SubscriberStatus:
        subscribers.add_metric([status.value], by_status.get(status, 0))
    yield subscribers

    editions = newest_editions(session)
    papers = GaugeMetricFamily("digest_edition_papers", f"Papers per edition (the newest {METRIC_EDITIONS}).",
                               labels=["edition"])
    deliveries = GaugeMetricFamily("digest_edition_deliveries",
                                   f"Delivery rows per edition and status (the newest {METRIC_EDITIONS} editions).",
                                   labels=["edition", "status"])
    if editions:
        paper_counts = dict(session.execute(
            select(Paper.edition, func.count()).where(Paper.edition >= editions[-1]).group_by(Paper.edition)
        ).all())
        counts = {(e, s): n for e, s, n in session.execute(
            select(Delivery.edition, Delivery.status, func.count())
            .where(Delivery.edition >= editions[-1]).group_by(Delivery.edition, Delivery.status)
        )}
        for edition in editions:
            papers.add_metric([edition.isoformat()], paper_counts.get(edition, 0))
            for status in DeliveryStatus:
                deliveries.add_metric([edition.isoformat(), status.value], counts.get((edition, status), 0))
    yield papers
    yield deliveries

    yield GaugeMetricFamily("digest_suppressed_addresses", "Addresses that are not mailed (bounced or suppressed).",
                            value=session.scalar(select(func.count()).select_from(Suppression)) or 0)
    oldest = oldest_due(session, now)
    yield GaugeMetricFamily(
        "digest_oldest_due_seconds",
        "Seconds since the longest-waiting digest became due without being sent (0: none is waiting).",
        value=(now - oldest).total_seconds() if oldest else 0.0,
    )


class _Scrape:
    def __init__(self, session: Session, now: datetime) -> None:
        self.session, self.now = session, now

    def collect(self) -> Iterable[Metric]:
        yield from _store_families(self.session, self.now)
        yield from _counted_families(self.session)


def metrics_text(session: Session, now: datetime | None = None) -> bytes:
    """The scrape: this process's own counts written first, then everything read from the store."""
    counters.flush()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(session, now or datetime.now(timezone.utc)))
    return generate_latest(registry)
