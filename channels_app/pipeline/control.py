"""Operating a destination: pause and resume it (or a whole channel), release what was held, and
read its health. The console, the REST API and the tasks all call these functions.

Pausing holds deliveries, it never drops them: messages are still received, ACKed and routed, and
their deliveries wait as QUEUED (a send already on the wire finishes). Resuming releases them in
id order, minus those still held by the destination's circuit breaker.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels_app import events
from channels_app.models import Channel, Destination
from channels_app.pipeline import breaker, ratelimit
from channels_app.pipeline.deliver import LEASE_ROUNDS

# QUEUED deliveries whose hold is over go back to PENDING: all of them where the destination is
# free (running, breaker closed), only the oldest (the next probe) where the breaker's cooldown is
# over, none where the hold stands.
RELEASE = """
WITH free AS (
    SELECT dest.id, dest.breaker_min_samples = 0 OR dest.breaker_state = 'closed' AS closed
    FROM channels_app_destination AS dest
    JOIN channels_app_channel AS ch ON ch.id = dest.channel_id
    WHERE (%(all)s OR dest.id = ANY(%(ids)s)) AND NOT dest.paused AND NOT ch.paused
      AND (dest.breaker_min_samples = 0 OR dest.breaker_state = 'closed'
        OR (dest.breaker_state = 'open' AND dest.breaker_changed_at
                <= %(now)s - make_interval(secs => dest.breaker_cooldown_s))
        OR (dest.breaker_state = 'half_open' AND dest.breaker_changed_at
                <= %(now)s - make_interval(secs => dest.timeout_s * %(rounds)s + %(margin)s)))
), probe AS (
    -- a breaker past its cooldown lets one delivery through: its oldest held one (found once
    -- per destination; a correlated lookup per held row took seconds with a large backlog)
    SELECT (SELECT q.id FROM channels_app_delivery AS q
            WHERE q.destination_id = f.id AND q.status = 'QUEUED' ORDER BY q.id LIMIT 1) AS id
    FROM free AS f WHERE NOT f.closed
), picked AS (
    SELECT d.id FROM channels_app_delivery AS d JOIN free AS f ON f.id = d.destination_id
    WHERE d.status = 'QUEUED' AND (f.closed OR d.id IN (SELECT id FROM probe))
    ORDER BY d.id LIMIT %(limit)s FOR UPDATE OF d SKIP LOCKED
)
UPDATE channels_app_delivery AS d SET status = 'PENDING', next_attempt_at = %(now)s
FROM picked WHERE d.id = picked.id
RETURNING d.id
"""

QUEUE_DEPTH = """
SELECT destination_id, status, count(*) FROM channels_app_delivery
WHERE destination_id = ANY(%s) AND status IN ('PENDING', 'SENDING', 'RETRY', 'QUEUED')
GROUP BY destination_id, status
"""


def pause(target: Destination | Channel) -> None:
    """Hold every delivery to ``target`` (a destination, or all of a channel's) as QUEUED."""
    type(target).objects.filter(pk=target.pk).update(paused=True)
    target.paused = True


def resume(target: Destination | Channel) -> list[int]:
    """Lift the pause and send what waited; returns the ids of the deliveries released."""
    type(target).objects.filter(pk=target.pk).update(paused=False)
    target.paused = False
    if isinstance(target, Channel):
        ids = list(target.destinations.values_list("id", flat=True))
    else:
        ids = [target.pk]
    return release(ids)


def release(destination_ids: list[int] | None = None) -> list[int]:
    """Release what is held where the hold is over, and enqueue it; None looks at every
    destination. Safe to call any time: a delivery still held stays QUEUED."""
    released = release_ids(destination_ids)
    if released:
        transaction.on_commit(lambda: events.enqueue_deliveries(released))
    return released


def release_ids(
    destination_ids: list[int] | None = None, now: datetime | None = None, limit: int = 100_000
) -> list[int]:
    """The database half of release(): QUEUED → PENDING where the hold is over (not enqueued)."""
    params = {
        "all": destination_ids is None,
        "ids": list(destination_ids or []),
        "now": now or timezone.now(),
        "rounds": LEASE_ROUNDS,  # a probe's lease, as the claim gives it
        "margin": settings.HUB["CLAIM_MARGIN_S"],
        "limit": limit,
    }
    with connection.cursor() as cursor:
        cursor.execute(RELEASE, params)
        return sorted(row[0] for row in cursor.fetchall())


def destination_health(destination: Destination) -> dict[str, Any]:
    """Breaker, pause and queue of one destination, as the console and the API show them."""
    return destinations_health([destination])[destination.pk]


def destinations_health(destinations: list[Destination]) -> dict[int, dict[str, Any]]:
    """destination_health() for many: one query and one Redis round trip whatever their number."""
    ids = [d.pk for d in destinations]
    depth: dict[int, dict[str, int]] = defaultdict(dict)
    if ids:
        with connection.cursor() as cursor:
            cursor.execute(QUEUE_DEPTH, [ids])
            for destination_id, status, n in cursor.fetchall():
                depth[destination_id][status] = n
    windows = breaker.window({d.pk: d.breaker_window_s for d in destinations})
    return {d.pk: _health(d, depth[d.pk], windows.get(d.pk)) for d in destinations}


def _health(d: Destination, depth: dict[str, int], window: tuple[int, int] | None) -> dict:
    channel_paused = d.channel.paused
    samples, failures = window or (0, 0)
    open_statuses = ("PENDING", "SENDING", "RETRY", "QUEUED")
    state = d.breaker_state if d.breaker_min_samples else "disabled"
    probe_at = None
    if state == breaker.OPEN and d.breaker_changed_at:
        probe_at = d.breaker_changed_at + timedelta(seconds=d.breaker_cooldown_s)
    return {
        "id": d.pk,
        "name": d.name,
        "paused": d.paused,
        "channel_paused": channel_paused,
        "held": d.paused or channel_paused or state in (breaker.OPEN, breaker.HALF_OPEN),
        "breaker": {
            "state": state,
            "changed_at": d.breaker_changed_at,
            "probe_at": probe_at,
            "window_s": d.breaker_window_s,
            "samples": samples if window is not None else None,  # None: Redis unavailable
            "failures": failures if window is not None else None,
            "error_rate": round(failures / samples, 3) if samples else None,
            "threshold": d.breaker_error_rate,
            "min_samples": d.breaker_min_samples,
            "cooldown_s": d.breaker_cooldown_s,
        },
        "rate_limit_per_s": d.rate_limit_per_s,
        "burst": ratelimit.burst(d.rate_limit_per_s) if d.rate_limit_per_s else None,
        "ordering_key": d.ordering_key,
        "queue": {
            **{s.lower(): depth.get(s, 0) for s in open_statuses},
            "total": sum(depth.get(s, 0) for s in open_statuses),
        },
    }
