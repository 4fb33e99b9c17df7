"""Per-minute traffic statistics: counts and latency histograms per channel and destination.

The minute in progress lives in Redis (one hash a minute, written once per batch by every
process, so web, workers and listeners add up to one view); closed minutes are rolled up into
PostgreSQL (``StatMinute``) by beat, so a restart does not blank the charts and a day of history
costs a few thousand rows, never a scan of the message table. Readers merge the two: a minute
still in Redis wins over its roll-up (it is the whole minute, including late additions).

Field names inside a minute: ``{channel}:{destination}:c:{counter}`` (destination 0: the channel
itself), ``…:h:{metric}:{bucket}`` (a histogram bucket, channels_app.histogram) and
``…:s:{metric}`` (the metric's sum in microseconds, for Prometheus' ``_sum``). The same fields
are added to one all-time hash, which ``/metrics`` exposes as counters.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from django.db import connection

from channels_app import histogram
from channels_app.pipeline.shared_state import redis_client

MINUTE_KEY: Final = "hub:stats:m:{}"
OPEN_MINUTES: Final = "hub:stats:open"  # minute -> when it was last written (epoch s)
TOTALS: Final = "hub:stats:total"
# A minute's hash outlives its roll-up, so a straggler's late addition is rolled up again whole.
KEEP_S: Final = 3 * 3600
# Minutes this old are closed: every process has flushed them (reporting lags by well under 1 s).
CLOSED_AFTER: Final = timedelta(seconds=75)

# Counters by name (channel: destination 0).
RECEIVED, PROCESSED, FILTERED = "received", "processed", "filtered"
DELIVERED, FAILED, RETRYING = "delivered", "failed", "retrying"
ERROR_PREFIX, ATTEMPT_PREFIX = "error:", "attempt:"
TYPE_PREFIX = "type:"  # received, by message type (ADT^A01): inactivity alerts read it
# Latency metrics: received -> delivered, received -> processed, processed -> delivered.
TOTAL, PROCESS, DELIVER = "total", "process", "deliver"
METRICS: Final = (TOTAL, PROCESS, DELIVER)
SUM_PREFIX: Final = "sum_us:"

Scope = tuple[int, int]  # (channel id, destination id or 0)


def minute_of(at: datetime) -> int:
    return int(at.timestamp()) // 60 * 60


class Tally:
    """What one batch (or several) adds to the statistics, before it is written in one go."""

    def __init__(self) -> None:
        self.fields: Counter[tuple[int, str]] = Counter()

    def count(self, at: datetime, scope: Scope, name: str, n: int = 1) -> None:
        self.fields[minute_of(at), f"{scope[0]}:{scope[1]}:c:{name}"] += n

    def latency(self, at: datetime, scope: Scope, metric: str, seconds: float) -> None:
        prefix = f"{scope[0]}:{scope[1]}"
        minute = minute_of(at)
        self.fields[minute, f"{prefix}:h:{metric}:{histogram.bucket_of(seconds)}"] += 1
        self.fields[minute, f"{prefix}:s:{metric}"] += max(0, round(seconds * 1_000_000))

    def add(self, other: Tally) -> None:
        self.fields.update(other.fields)

    def __bool__(self) -> bool:
        return bool(self.fields)


def write(tally: Tally) -> None:
    """Add a tally to Redis: one round trip, whatever its size."""
    if not tally:
        return
    pipe = redis_client().pipeline(transaction=False)
    minutes = set()
    for (minute, name), n in tally.fields.items():
        pipe.hincrby(MINUTE_KEY.format(minute), name, n)
        pipe.hincrby(TOTALS, name, n)
        minutes.add(minute)
    now = datetime.now(UTC).timestamp()
    for minute in minutes:
        pipe.expire(MINUTE_KEY.format(minute), KEEP_S)
    pipe.zadd(OPEN_MINUTES, {str(minute): now for minute in minutes})
    pipe.execute()


@dataclass(slots=True)
class Cell:
    """The statistics of one scope over some minutes."""

    counts: Counter = field(default_factory=Counter)
    histograms: dict[str, histogram.Histogram] = field(default_factory=dict)

    def add_field(self, kind: str, rest: str, n: int) -> None:
        if kind == "c":
            self.counts[rest] += n
        elif kind == "s":
            self.counts[SUM_PREFIX + rest] += n
        elif kind == "h":
            metric, bucket = rest.rsplit(":", 1)
            buckets = self.histograms.setdefault(metric, {})
            buckets[int(bucket)] = buckets.get(int(bucket), 0) + n

    def add(self, other: Cell) -> None:
        self.counts.update(other.counts)
        for metric, buckets in other.histograms.items():
            self.histograms[metric] = histogram.merge([self.histograms.get(metric, {}), buckets])


Minute = dict[Scope, Cell]


def parse_hash(raw: dict) -> Minute:
    """A Redis hash of fields (bytes or str) as cells by scope."""
    cells: Minute = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        channel, destination, kind, rest = name.split(":", 3)
        cells.setdefault((int(channel), int(destination)), Cell()).add_field(kind, rest, int(value))
    return cells


def totals() -> Minute:
    """All-time counters and histograms since Redis last started empty (Prometheus' view)."""
    return parse_hash(redis_client().hgetall(TOTALS))


# --- roll-up (beat)

UPSERT = """
INSERT INTO channels_app_statminute (minute, channel_id, destination_id, counts, histograms)
SELECT minute, channel_id, destination_id, counts, histograms
FROM jsonb_to_recordset(%s::jsonb) AS r(
    minute timestamptz, channel_id bigint, destination_id bigint, counts jsonb, histograms jsonb)
ON CONFLICT (minute, channel_id, destination_id)
DO UPDATE SET counts = EXCLUDED.counts, histograms = EXCLUDED.histograms
"""

# Forget a rolled-up minute unless someone wrote to it since it was read.
FORGET_IF_UNCHANGED = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


def rollup(now: datetime | None = None) -> int:
    """Copy every closed minute from Redis into PostgreSQL; returns the minutes rolled up.
    Idempotent: a minute is written whole, so rolling it up twice gives the same rows."""
    closed_before = minute_of((now or datetime.now(UTC)) - CLOSED_AFTER)
    client = redis_client()
    pending = client.zrangebyscore(OPEN_MINUTES, "-inf", "+inf", withscores=False)
    done = 0
    for member in pending:
        minute = int(member)
        if minute >= closed_before:
            continue
        score = client.zscore(OPEN_MINUTES, member)
        cells = parse_hash(client.hgetall(MINUTE_KEY.format(minute)))
        _upsert(minute, cells)
        client.eval(FORGET_IF_UNCHANGED, 1, OPEN_MINUTES, member, repr(score))
        done += 1
    return done


def _upsert(minute: int, cells: Minute) -> None:
    if not cells:
        return
    at = datetime.fromtimestamp(minute, UTC).isoformat()
    rows = [
        {
            "minute": at,
            "channel_id": channel,
            "destination_id": destination,
            "counts": dict(cell.counts),
            "histograms": cell.histograms,
        }
        for (channel, destination), cell in cells.items()
    ]
    with connection.cursor() as cursor:
        cursor.execute(UPSERT, [json.dumps(rows)])


# --- reading


def minutes(since: datetime, until: datetime | None = None) -> dict[int, Minute]:
    """Every minute from ``since`` (inclusive) to ``until`` (exclusive), by minute start (epoch
    s): roll-ups from PostgreSQL, replaced by Redis for the minutes it still holds open."""
    from channels_app.models import StatMinute

    first = minute_of(since)
    last = minute_of(until or datetime.now(UTC) + timedelta(minutes=1))
    found: dict[int, Minute] = {}
    rows = StatMinute.objects.filter(
        minute__gte=datetime.fromtimestamp(first, UTC),
        minute__lt=datetime.fromtimestamp(last, UTC),
    ).values_list("minute", "channel_id", "destination_id", "counts", "histograms")
    for minute, channel, destination, counts, histograms in rows.iterator(chunk_size=2000):
        cell = Cell(
            Counter(counts), {m: {int(b): n for b, n in h.items()} for m, h in histograms.items()}
        )
        found.setdefault(minute_of(minute), {})[channel, destination] = cell
    client = redis_client()
    open_minutes = [int(m) for m in client.zrangebyscore(OPEN_MINUTES, "-inf", "+inf")]
    in_range = [m for m in open_minutes if first <= m < last]
    if in_range:
        pipe = client.pipeline(transaction=False)
        for minute in in_range:
            pipe.hgetall(MINUTE_KEY.format(minute))
        for minute, raw in zip(in_range, pipe.execute(), strict=True):
            if raw:
                found[minute] = parse_hash(raw)
    return found


def combined(by_minute: Iterable[Minute], keep=lambda scope: True) -> Cell:
    """One cell adding up the scopes ``keep`` accepts over the given minutes."""
    cell = Cell()
    for minute in by_minute:
        for scope, part in minute.items():
            if keep(scope):
                cell.add(part)
    return cell


# --- the queue now (three aggregate queries over partial indexes)

OPEN_DELIVERIES: Final = """
SELECT destination_id, status, count(*), extract(epoch FROM now() - min(created_at))
FROM channels_app_delivery WHERE status IN ('PENDING', 'SENDING', 'RETRY', 'QUEUED')
GROUP BY destination_id, status
"""
UNPROCESSED: Final = """
SELECT channel_id, count(*) FROM channels_app_message WHERE status = 'RECEIVED' GROUP BY channel_id
"""


@dataclass(slots=True)
class QueueState:
    """Open deliveries per destination and status, their oldest age, and unprocessed messages
    per channel, as the database sees them now."""

    open: dict[tuple[int, str], int]
    oldest: dict[int, float]
    unprocessed: dict[int, int]

    def open_by_destination(self, destination_id: int) -> int:
        return sum(n for (d, _), n in self.open.items() if d == destination_id)


def queue_state() -> QueueState:
    with connection.cursor() as cursor:
        cursor.execute(OPEN_DELIVERIES)
        open_rows = cursor.fetchall()
        cursor.execute(UNPROCESSED)
        unprocessed = dict(cursor.fetchall())
    state = QueueState({}, {}, unprocessed)
    for destination_id, status, count, seconds in open_rows:
        state.open[destination_id, status] = count
        state.oldest[destination_id] = max(state.oldest.get(destination_id, 0.0), float(seconds))
    return state


def errors_by_stage(cell: Cell) -> dict[str, int]:
    return {
        name.removeprefix(ERROR_PREFIX): n
        for name, n in cell.counts.items()
        if name.startswith(ERROR_PREFIX)
    }
