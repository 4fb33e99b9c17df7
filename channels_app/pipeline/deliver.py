"""Stage 3: send one delivery, record the attempt, and decide: delivered, retry later, or failed.

Four queries per attempt: claim (conditional UPDATE), load, insert the Attempt, record the outcome.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from adapters.base import AdapterError
from adapters.registry import build_transport
from adapters.transports.base import Payload, SendResult, TransportError
from channels_app.models import Attempt, Delivery, Destination, Message

# Celery may run a countdown task a little early; a claim accepts it within this tolerance.
EARLY_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    retry_in: float | None = None  # seconds until the next try, when one is due


CLAIM = """
UPDATE channels_app_delivery AS d
SET status = 'SENDING',
    attempt_count = d.attempt_count + 1,
    next_attempt_at = %(now)s + make_interval(secs => dest.timeout_s + %(margin)s)
FROM channels_app_destination AS dest
WHERE d.id = %(id)s AND dest.id = d.destination_id
  AND d.status IN ('PENDING', 'RETRY') AND d.next_attempt_at <= %(due)s
RETURNING d.attempt_count, d.message_id, dest.id, dest.transport, dest.config, dest.timeout_s,
          dest.max_attempts, dest.backoff_base_s, dest.backoff_max_s
"""


def deliver(delivery_id: int) -> Outcome | None:
    """Try ``delivery_id`` once. None when it is not ours to send (done, or claimed elsewhere).

    The claim is one conditional UPDATE ("1 row updated = mine") that also sets a lease: if this
    worker dies mid-send, the sweeper hands the delivery to another once the lease lapses.
    """
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            CLAIM,
            {"now": now, "margin": settings.HUB["CLAIM_MARGIN_S"], "id": delivery_id, "due": now + EARLY_TOLERANCE},
        )
        row = cursor.fetchone()
    if row is None:
        return None
    attempt_count, message_id, *dest = row
    destination = Destination(**dict(zip(DESTINATION_FIELDS, dest, strict=True)))
    delivery = Delivery(
        id=delivery_id, message_id=message_id, destination_id=destination.id, attempt_count=attempt_count
    )
    canonical = Message.objects.filter(id=message_id).values_list("canonical", flat=True).first()
    started = timezone.now()
    t0 = time.perf_counter()
    try:
        result, error = _send(delivery, destination, canonical), None
    except AdapterError as exc:
        result, error = None, exc
    duration_ms = (time.perf_counter() - t0) * 1000
    return _record(delivery, destination, started, duration_ms, result, error)


DESTINATION_FIELDS = (
    "id",
    "transport",
    "config",
    "timeout_s",
    "max_attempts",
    "backoff_base_s",
    "backoff_max_s",
)


def _send(delivery: Delivery, destination: Destination, canonical: dict | None) -> SendResult:
    config = destination.config if isinstance(destination.config, dict) else json.loads(destination.config)
    transport = _transport(destination.transport, json.dumps(config, sort_keys=True))
    payload = encode(delivery, canonical)
    return transport.send(payload, timeout=destination.timeout_s)


@lru_cache(maxsize=256)
def _transport(name: str, config_json: str):
    return build_transport(name, json.loads(config_json))


def encode(delivery: Delivery, canonical: dict | None) -> Payload:
    if canonical is None:
        raise AdapterError("the message has no canonical content to deliver (was it pruned?)")
    body = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
    return Payload(
        body=body,
        content_type="application/fhir+json",
        idempotency_key=delivery.idempotency_key,
        name=f"message-{delivery.message_id:010d}-{delivery.idempotency_key[:8]}",
    )


def _record(delivery, destination, started, duration_ms, result, error) -> Outcome:
    now = timezone.now()
    attempt = Attempt(
        delivery_id=delivery.id,
        number=delivery.attempt_count,
        started_at=started,
        duration_ms=round(duration_ms, 3),
    )
    update: dict = {}
    if result is not None:
        attempt.outcome = Attempt.Outcome.SUCCESS
        attempt.status_code = result.status_code
        attempt.request_summary = result.request[:500]
        attempt.response_summary = result.summary
        update = {"status": Delivery.Status.DELIVERED, "delivered_at": now, "last_error": ""}
        outcome = Outcome(Delivery.Status.DELIVERED)
    else:
        attempt.status_code = getattr(error, "status_code", None)
        attempt.response_summary = getattr(error, "response", "")
        attempt.error = str(error)[:4000]
        exhausted = delivery.attempt_count >= destination.max_attempts
        if error.permanent or exhausted:
            attempt.outcome = Attempt.Outcome.PERMANENT if error.permanent else Attempt.Outcome.TRANSIENT
            reason = str(error) if error.permanent else f"gave up after {delivery.attempt_count} attempts: {error}"
            update = {"status": Delivery.Status.FAILED, "last_error": reason[:4000]}
            outcome = Outcome(Delivery.Status.FAILED)
        else:
            attempt.outcome = Attempt.Outcome.TRANSIENT
            wait = retry_delay(destination, delivery.attempt_count)
            update = {
                "status": Delivery.Status.RETRY,
                "next_attempt_at": now + timedelta(seconds=wait),
                "last_error": str(error)[:4000],
            }
            outcome = Outcome(Delivery.Status.RETRY, retry_in=wait)
    with transaction.atomic():
        attempt.save(force_insert=True)
        Delivery.objects.filter(id=delivery.id, status=Delivery.Status.SENDING).update(**update)
    return outcome


def retry_delay(destination: Destination, attempts_so_far: int) -> float:
    """Exponential backoff with full jitter, capped by the destination (sub-second bases allowed,
    which Celery's integer-second helper is not)."""
    ceiling = min(destination.backoff_max_s, destination.backoff_base_s * 2 ** max(0, attempts_so_far - 1))
    return max(0.05, random.uniform(0, ceiling))


__all__ = ["Outcome", "TransportError", "deliver", "encode", "retry_delay"]
