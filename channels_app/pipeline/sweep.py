"""The sweeper: the database is the source of truth, Redis only carries signals.

Anything RECEIVED or due for delivery that has seen no progress for a while is enqueued again, and
a delivery whose claim lapsed (its worker died mid-send) is handed back. Deliveries held QUEUED
whose hold is over (destination resumed, breaker cooled down) are released, so nothing stays
queued forever when the worker that should have released them died. Re-enqueueing is always
safe: processing and delivery claim their rows, so a duplicate task is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels_app.pipeline import control
from channels_app.pipeline.deliver import LANE_HEAD

BATCH = 5000

REQUEUE_MESSAGES = """
UPDATE channels_app_message SET sweep_after = %(now)s
WHERE id IN (
    SELECT id FROM channels_app_message
    WHERE status = 'RECEIVED' AND sweep_after < %(stale)s
    ORDER BY sweep_after LIMIT %(batch)s FOR UPDATE SKIP LOCKED
)
RETURNING id
"""

# PENDING/RETRY past due (their task was lost) and SENDING past its lease (its worker died). An
# abandoned send still gets its Attempt row, so the history shows every try. A delivery waiting
# behind the head of its lane is left alone: the head's settle enqueues it when its turn comes.
REQUEUE_DELIVERIES = f"""
WITH due AS (
    SELECT id, status, attempt_count FROM channels_app_delivery AS d
    WHERE (status IN ('PENDING', 'RETRY') AND next_attempt_at < %(stale)s AND {LANE_HEAD})
       OR (status = 'SENDING' AND next_attempt_at < %(now)s)
    ORDER BY next_attempt_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
), requeued AS (
    UPDATE channels_app_delivery AS d
    SET status = CASE WHEN due.status = 'SENDING' THEN 'RETRY' ELSE d.status END,
        next_attempt_at = %(now)s
    FROM due WHERE d.id = due.id
    RETURNING d.id
), abandoned AS (
    INSERT INTO channels_app_attempt (
        delivery_id, number, started_at, duration_ms, outcome, status_code,
        request_summary, response_summary, error, issues
    )
    SELECT id, attempt_count, %(now)s, 0, 'TRANSIENT', NULL, '', '',
           'the worker stopped during this attempt (its claim lapsed); sending again', '[]'
    FROM due WHERE status = 'SENDING'
)
SELECT id FROM requeued
"""


@dataclass(frozen=True, slots=True)
class Swept:
    message_ids: list[int]
    delivery_ids: list[int]


def sweep(now=None) -> Swept:
    now = now or timezone.now()
    params = {
        "now": now,
        "stale": now - timedelta(seconds=settings.HUB["SWEEP_AFTER_S"]),
        "batch": BATCH,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(REQUEUE_MESSAGES, params)
        message_ids = [r[0] for r in cursor.fetchall()]
        cursor.execute(REQUEUE_DELIVERIES, params)
        delivery_ids = [r[0] for r in cursor.fetchall()]
        delivery_ids += control.release_ids(now=now, limit=BATCH)
    return Swept(sorted(message_ids), sorted(delivery_ids))
