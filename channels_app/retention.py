"""Retention: a channel with ``retention_days`` set loses message bodies older than that.

The raw bytes are emptied and the canonical JSON (plain or sealed) is dropped; the metadata, the
error, the deliveries and their attempts stay, and ``pruned_at`` says when. A message is pruned
only once its work is over: processed (not RECEIVED) and no delivery still open, so nothing that
may yet be sent loses its body. Every run that pruned something writes one audit entry per
channel.

The same run forgets dedupe entries whose window has passed (`forget_expired_keys`): they
decide nothing any more, and would otherwise grow by one row per message forever.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from channels_app.models import Channel, Delivery, Message

BATCH = 1000
ACTOR = "system:retention"

# Closed deliveries are named, not open ones: a status added later counts as open until listed.
# A pruned message's business keys (names, identifiers) go with its body.
PRUNE_BATCH = """
WITH pruned AS (
UPDATE channels_app_message AS m
SET raw = ''::bytea, canonical = NULL, canonical_sealed = NULL, pruned_at = %(now)s
WHERE m.id IN (
    SELECT id FROM channels_app_message AS old
    WHERE old.channel_id = %(channel)s AND old.received_at < %(before)s
      AND old.pruned_at IS NULL AND old.status <> %(received)s
      AND NOT EXISTS (
          SELECT 1 FROM channels_app_delivery AS d
          WHERE d.message_id = old.id AND d.status <> ALL(%(closed)s)
      )
    ORDER BY old.received_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
)
RETURNING m.id
), forgotten AS (
    DELETE FROM channels_app_messagekey AS k USING pruned WHERE k.message_id = pruned.id
)
SELECT id FROM pruned
"""


def prune(now: datetime | None = None, *, batch: int = BATCH) -> dict[int, int]:
    """Prune every channel that has a retention period; returns the count pruned per channel."""
    from console import audit  # the audit log belongs to the console; imported at run time

    now = now or timezone.now()
    pruned: dict[int, int] = {}
    for channel in Channel.objects.filter(retention_days__isnull=False).only(
        "id", "name", "retention_days"
    ):
        before = now - timedelta(days=channel.retention_days)
        count = prune_channel(channel.id, before, now=now, batch=batch)
        if count:
            pruned[channel.id] = count
            audit.record(
                None,
                "retention.pruned",
                target=f"channel:{channel.id}",
                detail={
                    "channel": channel.name,
                    "count": count,
                    "before": before.isoformat(),
                    "retention_days": channel.retention_days,
                },
                actor_name=ACTOR,
            )
    return pruned


def prune_channel(channel_id: int, before: datetime, *, now: datetime, batch: int = BATCH) -> int:
    """Prune one channel's bodies received before ``before``, one committed batch at a time."""
    params = {
        "channel": channel_id,
        "before": before,
        "now": now,
        "received": Message.Status.RECEIVED,
        "closed": [Delivery.Status.DELIVERED, Delivery.Status.FAILED],
        "batch": batch,
    }
    return _in_batches(PRUNE_BATCH, params)


# An entry past its channel's window decides nothing: the key's next sighting starts a new window
# either way. One that counted duplicates stays, as the channel's "duplicates dropped" adds them
# up. Entries have no constraint in the database, so one whose channel is gone goes too. The
# oldest entries sit at the start of the table: each batch finds its rows early in the scan.
FORGET_KEYS = """
DELETE FROM channels_app_dedupeentry WHERE id = ANY(ARRAY(
    SELECT d.id FROM channels_app_dedupeentry AS d
    LEFT JOIN channels_app_channel AS c ON c.id = d.channel_id
    WHERE c.id IS NULL
       OR (d.duplicates = 0 AND d.seen_at < %(now)s - make_interval(secs => c.dedupe_window_s))
    LIMIT %(batch)s
))
"""


def forget_expired_keys(now: datetime | None = None, *, batch: int = 10 * BATCH) -> int:
    """Delete the dedupe entries that no longer decide anything, one committed batch at a
    time; returns how many."""
    params = {"now": now or timezone.now(), "batch": batch}
    return _in_batches(FORGET_KEYS, params)


def _in_batches(statement: str, params: dict) -> int:
    """Run ``statement`` (which changes at most ``params["batch"]`` rows) in its own transaction
    until a run changes fewer; returns how many rows changed in all."""
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, params)
            done = cursor.rowcount
        total += done
        if done < params["batch"]:
            return total
