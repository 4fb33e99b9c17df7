"""Per-minute statistics: written to Redis per batch, closed minutes rolled up into PostgreSQL,
read back merged, the same whichever store holds a minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from channels_app import histogram, stats
from channels_app.models import StatMinute

pytestmark = pytest.mark.django_db


def at(minutes_ago: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes_ago)


def tally(when: datetime, channel: int, dest: int, latencies: list[float]) -> stats.Tally:
    t = stats.Tally()
    t.count(when, (channel, 0), stats.RECEIVED, len(latencies))
    t.count(when, (channel, 0), stats.ERROR_PREFIX + "parse")
    for seconds in latencies:
        t.count(when, (channel, dest), stats.DELIVERED)
        t.latency(when, (channel, dest), stats.TOTAL, seconds)
    return t


def test_closed_minutes_roll_up_into_postgresql_and_read_back_the_same(redis_client):
    old, current = at(5), at(0)
    stats.write(tally(old, 1, 10, [0.01, 0.02, 0.03]))
    stats.write(tally(old, 1, 10, [0.5]))  # a second batch in the same minute adds up
    stats.write(tally(current, 1, 10, [0.04]))
    before = stats.minutes(at(10))

    assert stats.rollup() == 1  # only the closed minute
    assert StatMinute.objects.count() == 2  # the channel and its destination
    row = StatMinute.objects.get(destination_id=10)
    assert row.counts[stats.DELIVERED] == 4
    assert sum(row.histograms[stats.TOTAL].values()) == 4
    assert stats.rollup() == 0  # nothing left open but the current minute

    redis_client.delete(stats.MINUTE_KEY.format(stats.minute_of(old)))  # Redis forgot it
    after = stats.minutes(at(10))
    assert after.keys() == before.keys()
    cell = stats.combined(after.values())
    assert cell.counts[stats.RECEIVED] == 5
    assert stats.errors_by_stage(cell) == {"parse": 3}
    assert histogram.total(cell.histograms[stats.TOTAL]) == 5
    assert cell == stats.combined(before.values())


def test_a_late_addition_to_a_rolled_up_minute_is_rolled_up_again_whole(redis_client):
    old = at(5)
    stats.write(tally(old, 2, 20, [0.01]))
    stats.rollup()
    stats.write(tally(old, 2, 20, [0.02]))  # a straggler
    assert stats.rollup() == 1
    assert StatMinute.objects.get(channel_id=2, destination_id=20).counts[stats.DELIVERED] == 2


def test_all_time_totals_add_every_minute(redis_client):
    stats.write(tally(at(3), 3, 30, [0.1]))
    stats.write(tally(at(0), 3, 30, [0.2, 0.3]))
    cell = stats.totals()[3, 30]
    assert cell.counts[stats.DELIVERED] == 3
    assert cell.counts[stats.SUM_PREFIX + stats.TOTAL] == 600_000
