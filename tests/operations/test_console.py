"""What the console counts, straight from the library."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import text

from digest.operations.console import growth
from tests.factories import make_subscriber


@pytest.mark.postgres_only
def test_growth_counts_utc_days_whatever_the_servers_time_zone(session):
    session.execute(text("SET LOCAL TIME ZONE 'Pacific/Kiritimati'"))  # UTC+14: the next day there already
    make_subscriber(session, "late@example.org", created_at=datetime(2026, 11, 26, 20, 0, tzinfo=timezone.utc))
    days = {day: joined for day, joined, _ in growth(session, datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc), days=3)}
    assert days == {date(2026, 11, 27): 0, date(2026, 11, 26): 1, date(2026, 11, 25): 0}


def test_growth_lists_every_day_newest_first_with_unsubscribes(session):
    now = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    make_subscriber(session, "a@example.org", created_at=datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc),
                    unsubscribed_at=datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc))
    make_subscriber(session, "b@example.org", created_at=datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc))
    assert growth(session, now, days=3) == [(date(2026, 11, 27), 1, 1), (date(2026, 11, 26), 0, 0), (date(2026, 11, 25), 1, 0)]
