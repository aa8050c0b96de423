"""The next due instant: the subscriber's own hour, in their own zone, across DST and weeks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from digest.models import Frequency
from digest.schedule import next_due_at

UTC = timezone.utc


@dataclass
class Sub:
    timezone: str | None = "UTC"
    delivery_hour: int | None = 7
    frequency: object = Frequency.daily
    weekday: int | None = 0


def test_later_today_when_the_hour_has_not_come():
    now = datetime(2026, 11, 26, 6, 59, tzinfo=UTC)
    assert next_due_at(Sub(), now) == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def test_tomorrow_once_the_hour_has_passed_or_is_now():
    assert next_due_at(Sub(), datetime(2026, 11, 26, 7, 0, tzinfo=UTC)) == datetime(2026, 11, 27, 7, tzinfo=UTC)
    assert next_due_at(Sub(), datetime(2026, 11, 26, 9, 30, tzinfo=UTC)) == datetime(2026, 11, 27, 7, tzinfo=UTC)


def test_own_time_zone():
    # 07:00 in Tokyo (UTC+9) is 22:00 UTC the day before.
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert next_due_at(Sub("Asia/Tokyo"), now) == datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
    # 07:00 in Los Angeles (UTC-8 in November) is 15:00 UTC.
    assert next_due_at(Sub("America/Los_Angeles"), now) == datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    # A zone whose local date is still yesterday: Honolulu at 08:00 UTC is 22:00 on the 25th.
    assert next_due_at(Sub("Pacific/Honolulu"), datetime(2026, 11, 26, 8, 0, tzinfo=UTC)) == datetime(
        2026, 11, 26, 17, 0, tzinfo=UTC
    )


def test_unknown_or_missing_zone_means_utc_and_bad_hour_means_seven():
    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert next_due_at(Sub("Mars/Olympus_Mons"), now) == datetime(2026, 11, 26, 7, tzinfo=UTC)
    assert next_due_at(Sub(None, None), now) == datetime(2026, 11, 26, 7, tzinfo=UTC)
    assert next_due_at(Sub("UTC", 99), now) == datetime(2026, 11, 26, 7, tzinfo=UTC)


def test_weekly_next_chosen_weekday():
    # 2026-11-26 is a Thursday. Weekly on Monday at 07:00 UTC -> Monday 30 November.
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    monday = Sub(frequency=Frequency.weekly, weekday=0)
    assert next_due_at(monday, now) == datetime(2026, 11, 30, 7, tzinfo=UTC)
    # Thursday, hour not yet come -> today; hour passed -> next week.
    thursday = Sub(frequency="weekly", weekday=3, delivery_hour=18)
    assert next_due_at(thursday, now) == datetime(2026, 11, 26, 18, tzinfo=UTC)
    thursday.delivery_hour = 7
    assert next_due_at(thursday, now) == datetime(2026, 12, 3, 7, tzinfo=UTC)


def test_spring_forward_gap_is_delivered_when_the_clocks_jump():
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29; a 02:00 subscriber gets it at 03:00 CEST.
    sub = Sub("Europe/Berlin", 2)
    due = next_due_at(sub, datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert due == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert due.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    # and the day after is back to 02:00 local.
    assert next_due_at(sub, due) == datetime(2026, 3, 30, 0, 0, tzinfo=UTC)


def test_fall_back_repeated_hour_is_delivered_once_at_its_first_occurrence():
    # Europe/Berlin repeats 02:00-03:00 on 2026-10-25.
    sub = Sub("Europe/Berlin", 2)
    due = next_due_at(sub, datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert due == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST
    again = next_due_at(sub, due)
    assert again == datetime(2026, 10, 26, 1, 0, tzinfo=UTC)  # not 01:00 UTC the same day


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham",
         "America/Sao_Paulo", "Pacific/Kiritimati", "Pacific/Pago_Pago"]


@given(
    zone=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    weekly=st.booleans(),
    weekday=st.integers(0, 6),
    now=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
)
def test_properties(zone, hour, weekly, weekday, now):
    sub = Sub(zone, hour, Frequency.weekly if weekly else Frequency.daily, weekday)
    due = next_due_at(sub, now)
    assert due > now
    # Never more than one period (plus a DST hour) away: nobody is skipped.
    assert due - now <= timedelta(days=7 if weekly else 1, hours=1)
    local = due.astimezone(ZoneInfo(zone))
    # The wall clock shows the chosen hour, or up to an hour later when that hour fell in a DST gap.
    wall = local.replace(tzinfo=None)
    chosen = min(
        (datetime.combine(wall.date() - timedelta(days=d), datetime.min.time()).replace(hour=hour) for d in (0, 1)),
        key=lambda c: abs(wall - c),
    )
    assert timedelta(0) <= wall - chosen <= timedelta(hours=1)
    if weekly:
        assert chosen.weekday() == weekday
    # Advancing from the due instant never yields the same day twice.
    following = next_due_at(sub, due)
    assert following.astimezone(ZoneInfo(zone)).date() > local.date()
