"""Stage 2: parse, convert to canonical FHIR, validate, and create one Delivery per destination."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from adapters import mapping
from adapters.base import AdapterError
from adapters.codecs import hl7v2
from channels_app.models import Delivery, Destination, Message

# A batch is topped up to this size with messages whose own task is this late (a backlog).
BATCH_MAX = 50
LATE_AFTER = timedelta(milliseconds=250)

# One UPDATE for the whole batch, its rows passed as one JSON document (Django's bulk_update
# builds a CASE per field and row, and arrays of large JSON values are slow to escape).
SAVE_OUTCOMES = """
UPDATE channels_app_message AS m
SET status = o.status, canonical = o.canonical, issues = o.issues, processed_at = o.processed_at,
    error_stage = o.error_stage, error_class = o.error_class, error_path = o.error_path,
    error_detail = o.error_detail
FROM jsonb_to_recordset(%s::jsonb) AS o(
    id bigint, status text, canonical jsonb, issues jsonb, processed_at timestamptz,
    error_stage text, error_class text, error_path text, error_detail text)
WHERE m.id = o.id
"""


def process_messages(ids: list[int]) -> list[int]:
    """Process the RECEIVED messages among ``ids``; returns the ids of the deliveries created.

    Idempotent: rows already processed, or being processed by another worker (locked), are
    skipped. Everything happens in one transaction, so a worker killed half-way leaves the
    messages RECEIVED for the sweeper, never half-routed. When there is a backlog, the batch is
    topped up with other late messages: tasks grow with the load, and the tasks that were
    meant for those messages find nothing left to do.
    """
    with transaction.atomic():
        messages = _claim(ids)
        if not messages:
            return []
        destinations = _destinations_by_channel({m.channel_id for m in messages})
        now = timezone.now()
        deliveries: list[Delivery] = []
        for message in messages:
            _convert(message)
            message.processed_at = now
            if message.status == Message.Status.ERROR:
                continue
            targets = destinations.get(message.channel_id, [])
            if not targets:
                message.status = Message.Status.FILTERED
                continue
            message.status = Message.Status.PROCESSED
            deliveries += [
                Delivery(
                    message_id=message.id, destination_id=d.id, created_at=now, next_attempt_at=now
                )
                for d in targets
            ]
        _save_outcomes(messages)
        created = Delivery.objects.bulk_create(deliveries)
    return [d.id for d in created]


def _claim(ids: list[int]) -> list[Message]:
    open_messages = (
        Message.objects.select_for_update(skip_locked=True)
        .filter(status=Message.Status.RECEIVED)
        .only("id", "channel_id", "raw", "status", "canonical", "issues")
    )
    messages = list(open_messages.filter(id__in=ids).order_by("id"))
    room = BATCH_MAX - len(messages)
    if room > 0:
        late = timezone.now() - LATE_AFTER
        messages += (
            open_messages.filter(sweep_after__lt=late)
            .exclude(id__in=ids)
            .order_by("sweep_after")[:room]
        )
    return messages


def _save_outcomes(messages: list[Message]) -> None:
    rows = [
        {
            "id": m.id,
            "status": m.status,
            "canonical": m.canonical,
            "issues": m.issues or [],
            "processed_at": m.processed_at.isoformat(),
            "error_stage": m.error_stage,
            "error_class": m.error_class,
            "error_path": m.error_path,
            "error_detail": m.error_detail,
        }
        for m in messages
    ]
    with connection.cursor() as cursor:
        cursor.execute(SAVE_OUTCOMES, [json.dumps(rows, ensure_ascii=False)])


def _destinations_by_channel(channel_ids: set[int]) -> dict[int, list[Destination]]:
    found: dict[int, list[Destination]] = defaultdict(list)
    for destination in Destination.objects.filter(channel_id__in=channel_ids, enabled=True).only(
        "id", "channel_id"
    ):
        found[destination.channel_id].append(destination)
    return found


def _convert(message: Message) -> None:
    """Fill in the canonical bundle, or the error that stopped the message (with its place)."""
    message.error_stage = message.error_class = message.error_path = message.error_detail = ""
    try:
        parsed = hl7v2.parse(bytes(message.raw))
    except hl7v2.HL7Error as exc:
        message.__dict__.update(message.error_fields("parse", exc, exc.location))
        return
    try:
        result = mapping.convert(parsed)
    except AdapterError as exc:
        path = getattr(exc, "field", "") or ""
        target = getattr(exc, "target", "") or ""
        where = " → ".join(p for p in (str(path), str(target)) if p)
        message.__dict__.update(message.error_fields("map", exc, where))
        return
    except Exception as exc:  # a bug in a map must not stop the batch: record it on the message
        message.__dict__.update(message.error_fields("map", exc, ""))
        message.error_detail = f"internal error in the canonical map: {exc!r}"
        return
    message.canonical = result.bundle
    message.issues = [issue_dict(i) for i in result.issues]


def issue_dict(issue) -> dict:
    return {
        key: str(getattr(issue, key, "") or "")
        for key in ("segment", "field", "value", "target", "reason", "origin", "severity")
    }
