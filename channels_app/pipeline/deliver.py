"""Stage 3: send deliveries, record every attempt, and decide: delivered, retry later, or failed.

Deliveries travel in batches: one claim, one load, concurrent sends, one insert of the attempts and
one update of the outcomes, whatever the batch size (a query-count test guards this).
"""

from __future__ import annotations

import json
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from adapters.base import AdapterError
from adapters.registry import build_transport, transport_class
from adapters.transports.base import Payload, SendResult
from channels_app.models import Attempt, Delivery, Destination
from channels_app.sealing import SealError, open_config, unseal

# Celery may run a countdown task a little early; a claim accepts it within this tolerance.
EARLY_TOLERANCE = timedelta(seconds=1)
# A batch is topped up to this size with PENDING deliveries whose own task is this late.
BATCH_MAX = 50
LATE_AFTER = timedelta(milliseconds=250)
# Sends of one batch run concurrently; the claim's lease covers the rounds this takes.
SEND_CONCURRENCY = 16
_senders = ThreadPoolExecutor(SEND_CONCURRENCY, thread_name_prefix="send")

DESTINATION_FIELDS = (
    "id",
    "transport",
    "config",
    "timeout_s",
    "max_attempts",
    "backoff_base_s",
    "backoff_max_s",
)

# "1 row updated = mine": only PENDING/RETRY rows that are due are claimed, and the claim carries a
# lease; if this worker dies mid-send, the sweeper hands the delivery on once the lease lapses.
CLAIM = """
UPDATE channels_app_delivery AS d
SET status = 'SENDING',
    attempt_count = d.attempt_count + 1,
    next_attempt_at = %(now)s + make_interval(secs => dest.timeout_s * %(rounds)s + %(margin)s)
FROM channels_app_destination AS dest
WHERE (d.id = ANY(%(ids)s) OR d.id IN (
        -- a backlog: top the batch up with late deliveries to the same destinations
        SELECT id FROM channels_app_delivery
        WHERE status = 'PENDING' AND next_attempt_at < %(late)s AND id <> ALL(%(ids)s)
          AND destination_id IN (SELECT destination_id FROM channels_app_delivery WHERE id = ANY(%(ids)s))
        ORDER BY next_attempt_at LIMIT %(room)s FOR UPDATE SKIP LOCKED
    ))
  AND dest.id = d.destination_id
  AND d.status IN ('PENDING', 'RETRY') AND d.next_attempt_at <= %(due)s
RETURNING d.id, d.attempt_count, d.message_id, dest.id, dest.transport, dest.config,
          dest.timeout_s, dest.max_attempts, dest.backoff_base_s, dest.backoff_max_s
"""

# The raw inbound bytes only when a destination in the batch forwards them (e.g. MLLP).
LOAD_BODIES = """
SELECT id, canonical::text, canonical_sealed, CASE WHEN %(with_source)s THEN raw END
FROM channels_app_message WHERE id = ANY(%(ids)s)
"""

# Only rows still SENDING are settled: a row the sweeper already handed on is left alone.
SETTLE = """
UPDATE channels_app_delivery AS d
SET status = o.status, next_attempt_at = COALESCE(o.next_attempt_at, d.next_attempt_at),
    delivered_at = o.delivered_at, last_error = o.last_error
FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[])
     AS o(id, status, next_attempt_at, delivered_at, last_error)
WHERE d.id = o.id AND d.status = 'SENDING'
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    status: str
    retry_at: datetime | None = None  # when the next try is due, if one is


@dataclass(slots=True)
class _Claimed:
    delivery: Delivery
    destination: Destination
    started: datetime | None = None
    duration_ms: float = 0.0
    result: SendResult | None = None
    error: AdapterError | None = None


def deliver(delivery_ids: list[int]) -> list[Outcome]:
    """Try each due delivery among ``delivery_ids`` once; those not ours to send are skipped."""
    claimed = _claim(delivery_ids)
    if not claimed:
        return []
    bodies = _load_bodies(claimed)
    list(_senders.map(lambda c: _send(c, bodies.get(c.delivery.message_id)), claimed))
    return _settle(claimed)


@dataclass(frozen=True, slots=True)
class Body:
    canonical: str | None  # the FHIR JSON as stored, as text: sent as is, never re-encoded
    source: bytes | None  # the message as received, when a destination asked for it


def _load_bodies(claimed: list[_Claimed]) -> dict[int, Body]:
    with_source = any(
        getattr(transport_class(c.destination.transport), "needs_source", False) for c in claimed
    )
    params = {"ids": list({c.delivery.message_id for c in claimed}), "with_source": with_source}
    with connection.cursor() as cursor:
        cursor.execute(LOAD_BODIES, params)
        rows = cursor.fetchall()
    # Sealed at rest: the canonical JSON is in canonical_sealed, the source bytes are sealed.
    return {
        message_id: Body(
            canonical if sealed is None else unseal(sealed).decode(),
            unseal(source) if source is not None else None,
        )
        for message_id, canonical, sealed, source in rows
    }


def _claim(delivery_ids: list[int]) -> list[_Claimed]:
    now = timezone.now()
    params = {
        "now": now,
        "ids": list(delivery_ids),
        "due": now + EARLY_TOLERANCE,
        "late": now - LATE_AFTER,
        "room": max(0, BATCH_MAX - len(delivery_ids)),
        "rounds": math.ceil(BATCH_MAX / SEND_CONCURRENCY),
        "margin": settings.HUB["CLAIM_MARGIN_S"],
    }
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, params)
        rows = cursor.fetchall()
    claimed = []
    for delivery_id, attempt_count, message_id, *dest in rows:
        destination = Destination(**dict(zip(DESTINATION_FIELDS, dest, strict=True)))
        if isinstance(destination.config, str):  # raw SQL hands jsonb over as text under Django
            destination.config = json.loads(destination.config)
        delivery = Delivery(
            id=delivery_id,
            message_id=message_id,
            destination_id=destination.id,
            attempt_count=attempt_count,
        )
        claimed.append(_Claimed(delivery, destination))
    return claimed


def _send(claimed: _Claimed, body: Body | None) -> None:
    claimed.started = timezone.now()
    t0 = time.perf_counter()
    try:
        destination = claimed.destination
        transport = _transport(
            destination.transport, json.dumps(destination.config, sort_keys=True)
        )
        claimed.result = transport.send(
            encode(claimed.delivery, body), timeout=destination.timeout_s
        )
    except AdapterError as exc:
        claimed.error = exc
    claimed.duration_ms = round((time.perf_counter() - t0) * 1000, 3)


@lru_cache(maxsize=256)
def _transport(name: str, config_json: str):
    # Sealed secrets are opened here only, for the transport object; never log the opened config.
    try:
        config = open_config(name, json.loads(config_json))
    except SealError as exc:
        raise AdapterError(f"cannot open the destination's secrets: {exc}", permanent=False)
    return build_transport(name, config)


def encode(delivery: Delivery, body: Body | None) -> Payload:
    """The FHIR JSON as stored, plus the source bytes when loaded; transports pick what they send."""
    if body is None or body.canonical is None:
        raise AdapterError("the message has no canonical content to deliver (was it pruned?)")
    return Payload(
        body=body.canonical.encode(),
        content_type="application/fhir+json",
        idempotency_key=delivery.idempotency_key,
        name=f"message-{delivery.message_id:010d}-{delivery.idempotency_key[:8]}",
        source=body.source,
        message_id=delivery.message_id,
    )


def _settle(claimed: list[_Claimed]) -> list[Outcome]:
    now = timezone.now()
    attempts, outcomes = [], []
    for c in claimed:
        attempt, outcome = _judge(c)
        attempts.append(attempt)
        outcomes.append(outcome)
    outcomes = _schedule_retries(claimed, outcomes, now)
    with transaction.atomic():
        Attempt.objects.bulk_create(attempts)
        with connection.cursor() as cursor:
            cursor.execute(
                SETTLE,
                [
                    [o.delivery_id for o in outcomes],
                    [o.status for o in outcomes],
                    [o.retry_at for o in outcomes],
                    [now if o.status == Delivery.Status.DELIVERED else None for o in outcomes],
                    [
                        a.error if o.status != Delivery.Status.DELIVERED else ""
                        for a, o in zip(attempts, outcomes, strict=False)
                    ],
                ],
            )
    return outcomes


def _judge(c: _Claimed) -> tuple[Attempt, Outcome]:
    """The Attempt row for this try, and what happens to the delivery next."""
    delivery, destination, error = c.delivery, c.destination, c.error
    attempt = Attempt(
        delivery_id=delivery.id,
        number=delivery.attempt_count,
        started_at=c.started,
        duration_ms=c.duration_ms,
    )
    if error is None:
        attempt.outcome = Attempt.Outcome.SUCCESS
        attempt.status_code = c.result.status_code
        attempt.request_summary = c.result.request[:500]
        attempt.response_summary = c.result.summary
        attempt.issues = list(c.result.issues)
        return attempt, Outcome(delivery.id, Delivery.Status.DELIVERED)
    attempt.status_code = getattr(error, "status_code", None)
    attempt.response_summary = getattr(error, "response", "")
    attempt.issues = list(getattr(error, "issues", ()))
    exhausted = delivery.attempt_count >= destination.max_attempts
    if error.permanent:
        attempt.outcome = Attempt.Outcome.PERMANENT
        attempt.error = str(error)[:4000]
        return attempt, Outcome(delivery.id, Delivery.Status.FAILED)
    attempt.outcome = Attempt.Outcome.TRANSIENT
    if exhausted:
        attempt.error = f"gave up after {delivery.attempt_count} attempts: {error}"[:4000]
        return attempt, Outcome(delivery.id, Delivery.Status.FAILED)
    attempt.error = str(error)[:4000]
    return attempt, Outcome(delivery.id, Delivery.Status.RETRY)


def _schedule_retries(
    claimed: list[_Claimed], outcomes: list[Outcome], now: datetime
) -> list[Outcome]:
    """One backoff draw per batch: its retries travel together in one Celery retry."""
    retrying = [
        c for c, o in zip(claimed, outcomes, strict=True) if o.status == Delivery.Status.RETRY
    ]
    if not retrying:
        return outcomes
    worst = max(retrying, key=lambda c: c.delivery.attempt_count)
    retry_at = now + timedelta(seconds=retry_delay(worst.destination, worst.delivery.attempt_count))
    return [
        Outcome(o.delivery_id, o.status, retry_at) if o.status == Delivery.Status.RETRY else o
        for o in outcomes
    ]


def retry_delay(destination: Destination, attempts_so_far: int) -> float:
    """Exponential backoff with full jitter, capped by the destination (sub-second bases allowed,
    which Celery's integer-second helper is not)."""
    ceiling = min(
        destination.backoff_max_s, destination.backoff_base_s * 2 ** max(0, attempts_so_far - 1)
    )
    return max(0.05, random.uniform(0, ceiling))
