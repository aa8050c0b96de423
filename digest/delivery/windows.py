"""Delivery policy, pure: which editions a digest covers, when a failed message is tried again,
and when it is given up. No database, no network: models and the schedule only.

Which editions a digest covers: a paper's edition is the UTC date it entered the store, so an
edition is complete ("closed") once its UTC day has ended. A digest due at instant T covers the
closed editions after the subscriber's previous delivery row, from the day they confirmed, at most
7 (daily) or 14 (weekly) days back; its row carries the newest of them. Windows of one subscriber
are contiguous and never overlap, so no paper is ever sent twice and no closed edition is skipped.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from digest.models import Frequency

DAY = timedelta(days=1)
GIVE_UP_AFTER = timedelta(days=3)
SAME_RUN_TRIES = 3
FIRST_BACKOFF = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=6)
MAX_WINDOW_DAYS = {Frequency.daily: 7, Frequency.weekly: 14}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def window_start(subscriber, edition: date, previous: date | None) -> date:
    """First edition of the digest whose newest edition is `edition` (see the module docstring).
    `subscriber` is anything with `frequency`, `confirmed_at` and `created_at`."""
    frequency = subscriber.frequency if isinstance(subscriber.frequency, Frequency) else Frequency(subscriber.frequency)
    bounds = [edition - timedelta(days=MAX_WINDOW_DAYS[frequency] - 1)]
    since = subscriber.confirmed_at or subscriber.created_at
    if since is not None:
        bounds.append(since.astimezone(timezone.utc).date())
    if previous is not None:
        bounds.append(previous + DAY)
    return max(bounds)


def window(subscriber, edition: date, previous: date | None) -> tuple[date, ...]:
    """Every edition of that digest, oldest first; at least `edition` itself."""
    start = min(window_start(subscriber, edition, previous), edition)
    return tuple(start + timedelta(days=n) for n in range((edition - start).days + 1))


def has_news(subscriber, edition: date | None, previous: date | None) -> bool:
    """Whether a digest due now has a closed edition the subscriber has not had yet."""
    if edition is None or (previous is not None and previous >= edition):
        return False
    return window_start(subscriber, edition, previous) <= edition


def backoff(attempts: int) -> timedelta:
    """5 min, 10, 20, ... capped at 6 h: a greylisting server is retried soon, a full mailbox rarely."""
    return min(FIRST_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def given_up(created_at: datetime | None, now: datetime) -> bool:
    """A delivery still failing three days after it was created is not tried again."""
    return created_at is not None and now - created_at >= GIVE_UP_AFTER

