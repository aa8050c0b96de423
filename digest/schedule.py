"""When a subscriber's next digest is due: their delivery hour, in their own time zone.

`dispatch` picks who is due with one indexed query on `Subscriber.next_due_at`; this module is
the only place that turns (time zone, hour, daily/weekly, weekday) into that UTC instant.

Daylight-saving rules, decided once here:
- an hour that does not exist on a spring-forward day (02:30 in Europe/Berlin) is delivered at
  the moment the clocks jump, which is the same UTC instant as the hour before the gap;
- an hour that happens twice on a fall-back day is delivered at its first occurrence.
Both come from zoneinfo's `fold=0`, so a subscriber never misses a day and never gets two.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_HOUR = 7


class Schedulable(Protocol):
    timezone: str | None
    delivery_hour: int | None
    frequency: object  # Frequency enum or its string value
    weekday: int | None


@lru_cache(maxsize=1024)
def zone_of(name: str | None) -> ZoneInfo | timezone:
    """The subscriber's zone; UTC when unknown or unset (a bad name must never stop a send)."""
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def is_known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _is_weekly(frequency: object) -> bool:
    return str(getattr(frequency, "value", frequency)) == "weekly"


def _hour(value: int | None) -> int:
    return value if isinstance(value, int) and 0 <= value <= 23 else DEFAULT_HOUR


def next_due_at(subscriber: Schedulable, now: datetime) -> datetime:
    """The first UTC instant strictly after `now` at which this subscriber's digest is due.

    Strictly after, so that advancing `next_due_at` when a delivery row is created always moves
    the subscriber out of the due set, however late `dispatch` ran.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = zone_of(subscriber.timezone)
    hour = _hour(subscriber.delivery_hour)
    weekly = _is_weekly(subscriber.frequency)
    weekday = subscriber.weekday if isinstance(subscriber.weekday, int) and 0 <= subscriber.weekday <= 6 else 0

    local_today: date = now.astimezone(zone).date()
    # Eight days cover every weekly case; the day before covers zones where the local date
    # lags and the hour has not come yet.
    for offset in range(-1, 9):
        day = local_today + timedelta(days=offset)
        if weekly and day.weekday() != weekday:
            continue
        candidate = datetime.combine(day, time(hour), tzinfo=zone).astimezone(timezone.utc)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: a due time always exists within eight days")  # pragma: no cover


def local_day(subscriber: Schedulable, instant: datetime) -> date:
    """The subscriber's calendar date at `instant` (for saying 'your digest of Thursday')."""
    return instant.astimezone(zone_of(subscriber.timezone)).date()
