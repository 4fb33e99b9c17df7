"""Stage 3: send deliveries, record every attempt, and decide: delivered, retry later, or failed.

Deliveries travel in batches: one claim, one load, concurrent sends, one insert of the attempts and
one update of the outcomes, whatever the batch size (a query-count test guards this).

The destination's policy is applied on the way (README, "Delivery policy"): the claim holds
deliveries QUEUED while the destination or its channel is paused or its circuit breaker is open
(and lets one probe through once the cooldown is over), and takes only the head of each ordered
lane; the rate limit defers what is over the destination's budget (no attempt counted); the
settle records the breaker's window (Redis, one round trip), moves its state on the destination
row, and names the next delivery of each lane whose head is done.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils import timezone

from adapters.base import AdapterError
from adapters.codecs import exact_json
from adapters.registry import build_transport, transport_class
from adapters.transports.base import Payload, SendResult
from channels_app import events
from channels_app.models import Attempt, Delivery, Destination
from channels_app.pipeline import breaker, prepared, ratelimit
from channels_app.sealing import SealError, open_config, unseal

# Celery may run a countdown task a little early; a claim accepts it within this tolerance.
EARLY_TOLERANCE = timedelta(seconds=1)
# A batch is topped up to this size with PENDING deliveries whose own task is this late.
BATCH_MAX = 50
LATE_AFTER = timedelta(milliseconds=250)
# Sends of one batch run concurrently; the claim's lease covers the rounds this takes.
SEND_CONCURRENCY = 16
_senders = ThreadPoolExecutor(SEND_CONCURRENCY, thread_name_prefix="send")
LEASE_ROUNDS = math.ceil(BATCH_MAX / SEND_CONCURRENCY)

DESTINATION_FIELDS = (
    "id",
    "transport",
    "config",
    "timeout_s",
    "max_attempts",
    "backoff_base_s",
    "backoff_max_s",
    "rate_limit_per_s",
    "breaker_state",
    "breaker_error_rate",
    "breaker_min_samples",
    "breaker_window_s",
)

OPEN_STATUSES = "('PENDING', 'SENDING', 'RETRY', 'QUEUED')"

# An ordered delivery is claimable only when no earlier message of its lane is still open (in
# the order messages were received, whatever order they were routed in), and no earlier message
# of its channel is still unrouted (it may belong to the lane; once routed it is in the lane).
LANE_HEAD = f"""(d.ordering_key = '' OR (NOT EXISTS (
    SELECT 1 FROM channels_app_delivery AS older
    WHERE older.destination_id = d.destination_id AND older.ordering_key = d.ordering_key
      AND older.status IN {OPEN_STATUSES} AND older.message_id < d.message_id)
  AND NOT EXISTS (
    SELECT 1 FROM channels_app_message AS unrouted
    WHERE unrouted.status = 'RECEIVED' AND unrouted.id < d.message_id
      AND unrouted.channel_id = (
          SELECT lane_dest.channel_id FROM channels_app_destination AS lane_dest
          WHERE lane_dest.id = d.destination_id))))"""

# "1 row updated = mine": only due PENDING/RETRY rows that head their lane are claimed (rows
# another worker holds are skipped: it claims or re-enqueues them). A claimed row is sent, with a
# lease (if this worker dies mid-send, the sweeper hands it on once the lease lapses), or held
# QUEUED when its destination or channel is paused or its breaker is open. An open breaker past
# its cooldown (or a half-open one whose probe's lease lapsed) turns half-open here and lets
# exactly one delivery through: the probe.
CLAIM = f"""
WITH topup AS (
    -- a backlog: top the batch up with late deliveries to the same destinations (not to
    -- rate-limited ones, whose surplus would only be deferred again)
    SELECT d.id FROM channels_app_delivery AS d
    WHERE d.status = 'PENDING' AND d.next_attempt_at < %(late)s AND d.id <> ALL(%(ids)s)
      AND d.destination_id IN (
          SELECT b.destination_id FROM channels_app_delivery AS b
          JOIN channels_app_destination AS bd ON bd.id = b.destination_id
          WHERE b.id = ANY(%(ids)s) AND COALESCE(bd.rate_limit_per_s, 0) <= 0)
      AND {LANE_HEAD}
    ORDER BY d.next_attempt_at LIMIT %(room)s FOR UPDATE SKIP LOCKED
), claimable AS (
    SELECT d.id, d.destination_id, dest.paused OR ch.paused AS paused,
           dest.breaker_min_samples = 0 OR dest.breaker_state = 'closed' AS closed
    FROM channels_app_delivery AS d
    JOIN channels_app_destination AS dest ON dest.id = d.destination_id
    JOIN channels_app_channel AS ch ON ch.id = dest.channel_id
    WHERE (d.id = ANY(%(ids)s) OR d.id IN (SELECT id FROM topup))
      AND d.status IN ('PENDING', 'RETRY') AND d.next_attempt_at <= %(due)s
      AND {LANE_HEAD}
    FOR UPDATE OF d SKIP LOCKED
), probe AS (
    UPDATE channels_app_destination AS dest
    SET breaker_state = 'half_open', breaker_changed_at = %(now)s
    WHERE dest.id IN (SELECT destination_id FROM claimable WHERE NOT paused AND NOT closed)
      AND ((dest.breaker_state = 'open' AND dest.breaker_changed_at
                <= %(now)s - make_interval(secs => dest.breaker_cooldown_s))
        OR (dest.breaker_state = 'half_open' AND dest.breaker_changed_at
                <= %(now)s - make_interval(secs => dest.timeout_s * %(rounds)s + %(margin)s)))
    RETURNING dest.id
), verdict AS (
    SELECT c.id, c.closed, NOT c.closed AND c.destination_id IN (SELECT id FROM probe)
           AND row_number() OVER (PARTITION BY c.destination_id ORDER BY c.id) = 1 AS probe,
           c.paused
    FROM claimable AS c
)
UPDATE channels_app_delivery AS d
SET status = CASE WHEN v.go THEN 'SENDING' ELSE 'QUEUED' END,
    attempt_count = d.attempt_count + v.go::int,
    next_attempt_at = CASE WHEN v.go
        THEN %(now)s + make_interval(secs => dest.timeout_s * %(rounds)s + %(margin)s)
        ELSE d.next_attempt_at END
FROM (SELECT id, probe, NOT paused AND (closed OR probe) AS go FROM verdict) AS v,
     channels_app_destination AS dest
WHERE d.id = v.id AND dest.id = d.destination_id
RETURNING d.id, v.go, v.probe, d.attempt_count, d.attempts_at_replay, d.message_id,
          dest.id, dest.transport, dest.config, dest.timeout_s, dest.max_attempts,
          dest.backoff_base_s, dest.backoff_max_s, dest.rate_limit_per_s, dest.breaker_state,
          dest.breaker_error_rate, dest.breaker_min_samples, dest.breaker_window_s
"""

# The raw inbound bytes only when a destination in the batch forwards them (e.g. MLLP).
LOAD_BODIES = """
SELECT id, canonical::text, canonical_sealed, CASE WHEN %(with_source)s THEN raw END,
       channel_id, message_type, received_at, processed_at
FROM channels_app_message WHERE id = ANY(%(ids)s)
"""

# Every attempt is recorded (its rows passed as one JSON document). Only rows still SENDING are
# settled: a row the sweeper already handed on is left alone. A deferred row (over the rate
# limit) goes back to PENDING with its attempt given back. The breaker transitions are
# conditional on the state they leave, so two workers cannot both move it. Returned: the next
# delivery of each lane whose head is now done, and the transitions made. One statement: atomic.
SETTLE = f"""
WITH attempts AS (
    INSERT INTO channels_app_attempt (
        delivery_id, number, started_at, duration_ms, outcome, status_code, request_summary,
        response_summary, error, issues)
    SELECT delivery_id, number, started_at, duration_ms, outcome, status_code,
           request_summary, response_summary, error, issues
    FROM jsonb_to_recordset(%(attempts)s::jsonb) AS a(
        delivery_id bigint, number integer, started_at timestamptz, duration_ms float8,
        outcome text, status_code integer, request_summary text, response_summary text,
        error text, issues jsonb)
), o AS (
    SELECT * FROM jsonb_to_recordset(%(settled)s::jsonb) AS o(
        id bigint, status text, next_attempt_at timestamptz, delivered_at timestamptz,
        last_error text, refund int)
), settled AS (
    UPDATE channels_app_delivery AS d
    SET status = o.status, next_attempt_at = COALESCE(o.next_attempt_at, d.next_attempt_at),
        delivered_at = o.delivered_at, last_error = COALESCE(o.last_error, d.last_error),
        attempt_count = d.attempt_count - o.refund
    FROM o WHERE d.id = o.id AND d.status = 'SENDING'
    RETURNING d.id, d.message_id, d.destination_id, d.ordering_key, d.status
), moved AS (
    UPDATE channels_app_destination AS dest
    SET breaker_state = t.to_state, breaker_changed_at = %(now)s
    FROM unnest(%(t_ids)s::bigint[], %(t_from)s::text[], %(t_to)s::text[])
        AS t(id, from_state, to_state)
    WHERE dest.id = t.id AND dest.breaker_state = t.from_state
    RETURNING dest.id, dest.breaker_state, dest.breaker_cooldown_s
)
SELECT 'next', n.id, NULL::float8 FROM settled AS s
CROSS JOIN LATERAL (
    SELECT n.id, n.status FROM channels_app_delivery AS n
    WHERE n.destination_id = s.destination_id AND n.ordering_key = s.ordering_key
      AND n.status IN {OPEN_STATUSES} AND n.message_id > s.message_id
    ORDER BY n.message_id LIMIT 1
) AS n
WHERE s.status IN ('DELIVERED', 'FAILED') AND s.ordering_key <> '' AND n.status = 'PENDING'
UNION ALL
SELECT m.breaker_state, m.id, m.breaker_cooldown_s FROM moved AS m
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    status: str  # DELIVERED, FAILED, RETRY; QUEUED (held); PENDING (deferred by the rate limit)
    retry_at: datetime | None = None  # when the next try is due, if one is


@dataclass(slots=True)
class Batch:
    """What a batch did, and what the task must enqueue because of it."""

    outcomes: list[Outcome] = field(default_factory=list)
    # Deliveries to enqueue now: the next of each lane whose head was delivered or failed.
    ready: list[int] = field(default_factory=list)
    # Breakers this batch opened (destination id -> cooldown in s) and closed.
    opened: dict[int, float] = field(default_factory=dict)
    closed: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Claimed:
    delivery: Delivery
    destination: Destination
    config_json: str  # the destination's config as JSON: the key of its cached transport
    probe: bool = False
    started: datetime | None = None
    duration_ms: float = 0.0
    result: SendResult | None = None
    error: AdapterError | None = None


def deliver(delivery_ids: list[int]) -> Batch:
    """Try each due delivery among ``delivery_ids`` once; those not ours to send are skipped."""
    claimed, held = _claim(delivery_ids)
    if not claimed:
        return Batch(held)
    sending, deferred = _take_tokens(claimed)
    bodies = _load_bodies(sending) if sending else {}
    if sending:
        list(_senders.map(lambda c: _send(c, bodies.get(c.delivery.message_id)), sending))
    batch = _settle(sending, deferred)
    events.delivered(_reports(sending, batch.outcomes, bodies))
    batch.outcomes += held
    return batch


@dataclass(frozen=True, slots=True)
class Body:
    canonical: str | None  # the FHIR JSON as stored, as text: sent as is, never re-encoded
    source: bytes | None  # the message as received, when a destination asked for it
    # What the events seam reports with the outcome (loaded with the body: no query of its own).
    channel_id: int = 0
    message_type: str = ""
    received_at: datetime | None = None
    processed_at: datetime | None = None


def _load_bodies(claimed: list[_Claimed]) -> dict[int, Body]:
    with_source = any(
        getattr(transport_class(c.destination.transport), "needs_source", False) for c in claimed
    )
    params = {"ids": list({c.delivery.message_id for c in claimed}), "with_source": with_source}
    with prepared.cursor(binary=True) as cursor:
        cursor.execute(LOAD_BODIES, params)
        rows = cursor.fetchall()
    # Sealed at rest: the canonical JSON is in canonical_sealed, the source bytes are sealed.
    return {
        message_id: Body(
            canonical if sealed is None else unseal(sealed).decode(),
            unseal(source) if source is not None else None,
            *about,
        )
        for message_id, canonical, sealed, source, *about in rows
    }


def _reports(sent: list[_Claimed], outcomes: list[Outcome], bodies: dict) -> list[events.Sent]:
    """The settled attempts as the events seam takes them (outcomes start with those of sent)."""
    reports = []
    for c, outcome in zip(sent, outcomes, strict=False):
        body = bodies.get(c.delivery.message_id) or Body(None, None)
        error = c.error
        reports.append(
            events.Sent(
                channel_id=body.channel_id,
                destination_id=c.destination.id,
                message_id=c.delivery.message_id,
                message_type=body.message_type,
                status=outcome.status,
                attempt="success" if error is None else _attempt_kind(error),
                received_at=body.received_at,
                processed_at=body.processed_at,
                error="" if error is None else str(error),
            )
        )
    return reports


def _attempt_kind(error: AdapterError) -> str:
    return "permanent" if error.permanent else "transient"


def _claim(delivery_ids: list[int]) -> tuple[list[_Claimed], list[Outcome]]:
    """The deliveries to send, and those held QUEUED (paused, or the breaker open)."""
    now = timezone.now()
    params = {
        "now": now,
        "ids": list(delivery_ids),
        "due": now + EARLY_TOLERANCE,
        "late": now - LATE_AFTER,
        "room": max(0, BATCH_MAX - len(delivery_ids)),
        "rounds": LEASE_ROUNDS,
        "margin": settings.HUB["CLAIM_MARGIN_S"],
    }
    with prepared.cursor() as cursor:
        cursor.execute(CLAIM, params)
        rows = cursor.fetchall()
    claimed, held = [], []
    destinations: dict[int, tuple[Destination, str]] = {}  # one per destination, not per row
    for delivery_id, go, probe, attempt_count, at_replay, message_id, *dest in rows:
        if not go:
            held.append(Outcome(delivery_id, Delivery.Status.QUEUED))
            continue
        if dest[0] not in destinations:
            destinations[dest[0]] = _destination(dest)
        destination, config_json = destinations[dest[0]]
        delivery = Delivery(
            id=delivery_id,
            message_id=message_id,
            destination_id=destination.id,
            attempt_count=attempt_count,
            attempts_at_replay=at_replay,
        )
        claimed.append(_Claimed(delivery, destination, config_json, probe=probe))
    claimed.sort(key=lambda c: c.delivery.id)
    return claimed, held


def _destination(columns: list) -> tuple[Destination, str]:
    """The claimed row's destination, and its config as JSON text (the key of its transport)."""
    destination = Destination(**dict(zip(DESTINATION_FIELDS, columns, strict=True)))
    config = destination.config
    if isinstance(config, str):  # raw SQL hands jsonb over as text under Django
        destination.config = json.loads(config)
        return destination, config  # jsonb's text is canonical: one config, one text
    return destination, json.dumps(config, sort_keys=True)


def _take_tokens(claimed: list[_Claimed]) -> tuple[list[_Claimed], list[Outcome]]:
    """Split the batch by the destinations' rate limits: what goes now and what is deferred (the
    oldest go first; a probe always goes, it is one delivery after a long silence)."""
    limited: dict[int, list[_Claimed]] = defaultdict(list)
    for c in claimed:
        if (c.destination.rate_limit_per_s or 0) > 0 and not c.probe:
            limited[c.destination.id].append(c)
    if not limited:
        return claimed, []
    grants = ratelimit.take(
        {i: (cs[0].destination.rate_limit_per_s, len(cs)) for i, cs in limited.items()}
    )
    now = timezone.now()
    over: set[int] = set()
    deferred = []
    for destination_id, cs in limited.items():
        grant = grants[destination_id]
        retry_at = now + timedelta(seconds=grant.wait_s)
        for c in cs[grant.granted :]:
            over.add(c.delivery.id)
            deferred.append(Outcome(c.delivery.id, Delivery.Status.PENDING, retry_at))
    return [c for c in claimed if c.delivery.id not in over], deferred


def _send(claimed: _Claimed, body: Body | None) -> None:
    claimed.started = timezone.now()
    t0 = time.perf_counter()
    try:
        destination = claimed.destination
        transport = _transport(destination.transport, claimed.config_json)
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
    key = delivery.idempotency_key
    return Payload(
        body=body.canonical.encode(),
        content_type="application/fhir+json",
        idempotency_key=key,
        name=f"message-{delivery.message_id:010d}-{key[:8]}",
        source=body.source,
        message_id=delivery.message_id,
    )


def _settle(sent: list[_Claimed], deferred: list[Outcome]) -> Batch:
    now = timezone.now()
    attempts, outcomes = [], []
    for c in sent:
        attempt, outcome = _judge(c)
        attempts.append(attempt)
        outcomes.append(outcome)
    outcomes = _schedule_retries(sent, outcomes, now)
    transitions = breaker.record(_tallies(sent))
    rows = [
        (o, a["error"] if o.status != Delivery.Status.DELIVERED else "", 0)
        for o, a in zip(outcomes, attempts, strict=True)
    ] + [(o, None, 1) for o in deferred]
    params = {
        "now": now,
        # Rows as JSON documents written by msgspec (datetimes included): arrays cost psycopg
        # about 1 us an element to adapt.
        "attempts": exact_json.encode(attempts).decode(),
        "settled": exact_json.encode(
            [
                {
                    "id": o.delivery_id,
                    "status": o.status,
                    "next_attempt_at": o.retry_at,
                    "delivered_at": now if o.status == Delivery.Status.DELIVERED else None,
                    "last_error": error,
                    "refund": refund,
                }
                for o, error, refund in rows
            ]
        ).decode(),
        "t_ids": [t.destination_id for t in transitions],
        "t_from": [t.from_state for t in transitions],
        "t_to": [t.to_state for t in transitions],
    }
    with prepared.cursor() as cursor:
        cursor.execute(SETTLE, params)
        returned = cursor.fetchall()
    batch = Batch(outcomes + deferred)
    for kind, ident, cooldown_s in returned:
        if kind == "next":
            batch.ready.append(ident)
        elif kind == breaker.OPEN:
            batch.opened[ident] = cooldown_s
        elif kind == breaker.CLOSED:
            batch.closed.append(ident)
    return batch


def _tallies(sent: list[_Claimed]) -> list[tuple[breaker.Policy, breaker.Tally]]:
    """Each destination's outcomes for its breaker window (a permanent refusal is not counted,
    but answers a probe: the destination is up)."""
    tallies: dict[int, tuple[breaker.Policy, breaker.Tally]] = {}
    for c in sent:
        d = c.destination
        policy = breaker.Policy(
            d.id, d.breaker_state, d.breaker_error_rate, d.breaker_min_samples, d.breaker_window_s
        )
        _, tally = tallies.setdefault(d.id, (policy, breaker.Tally()))
        transient = c.error is not None and not c.error.permanent
        if c.probe:
            tally.probe = "failure" if transient else "success"
        elif transient:
            tally.failures += 1
        elif c.error is None:
            tally.successes += 1
    return list(tallies.values())


def _judge(c: _Claimed) -> tuple[dict, Outcome]:
    """The Attempt row for this try (as the settle inserts it), and what happens next."""
    delivery, destination, error = c.delivery, c.destination, c.error
    attempt = {
        "delivery_id": delivery.id,
        "number": delivery.attempt_count,
        "started_at": c.started,
        "duration_ms": c.duration_ms,
        "request_summary": "",
        "error": "",
    }
    if error is None:
        attempt.update(
            outcome=Attempt.Outcome.SUCCESS,
            status_code=c.result.status_code,
            request_summary=c.result.request[:500],
            response_summary=c.result.summary,
            issues=list(c.result.issues),
        )
        return attempt, Outcome(delivery.id, Delivery.Status.DELIVERED)
    attempt.update(
        status_code=getattr(error, "status_code", None),
        response_summary=getattr(error, "response", "") or "",
        issues=list(getattr(error, "issues", ())),
    )
    tries = delivery.attempts_since_replay  # a replay starts a fresh budget
    exhausted = 0 < destination.max_attempts <= tries  # 0: no limit
    if error.permanent:
        attempt.update(outcome=Attempt.Outcome.PERMANENT, error=str(error)[:4000])
        return attempt, Outcome(delivery.id, Delivery.Status.FAILED)
    attempt["outcome"] = Attempt.Outcome.TRANSIENT
    if exhausted:
        attempt["error"] = f"gave up after {tries} attempts: {error}"[:4000]
        return attempt, Outcome(delivery.id, Delivery.Status.FAILED)
    attempt["error"] = str(error)[:4000]
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
    worst = max(retrying, key=lambda c: c.delivery.attempts_since_replay)
    delay = retry_delay(worst.destination, worst.delivery.attempts_since_replay)
    retry_at = now + timedelta(seconds=delay)
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
