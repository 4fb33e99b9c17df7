"""Thin Celery tasks: take ids, call the pipeline, enqueue the next stage."""

from __future__ import annotations

import logging

from celery import shared_task

from channels_app.pipeline import deliver as deliver_stage
from channels_app.pipeline.process import process_messages as process_stage
from channels_app.pipeline.sweep import sweep as sweep_stage

log = logging.getLogger(__name__)

# One process task carries many messages; the listener batches them per commit.
PROCESS_CHUNK = 200


@shared_task(acks_late=True)
def process_messages(message_ids: list[int]) -> int:
    delivery_ids = process_stage(message_ids)
    enqueue_deliveries(delivery_ids)
    return len(delivery_ids)


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver(self, delivery_id: int) -> str | None:
    outcome = deliver_stage.deliver(delivery_id)
    if outcome is None:
        return None
    if outcome.retry_in is not None:
        # Celery schedules the next try; the row's next_attempt_at lets the sweeper redo it if
        # this countdown is lost with Redis.
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task
def sweep() -> dict:
    swept = sweep_stage()
    enqueue_processing(swept.message_ids)
    enqueue_deliveries(swept.delivery_ids)
    if swept.message_ids or swept.delivery_ids:
        log.info(
            "sweeper re-enqueued %d message(s) and %d deliverie(s)",
            len(swept.message_ids),
            len(swept.delivery_ids),
        )
    return {"messages": len(swept.message_ids), "deliveries": len(swept.delivery_ids)}


def enqueue_processing(message_ids: list[int]) -> None:
    for start in range(0, len(message_ids), PROCESS_CHUNK):
        process_messages.delay(message_ids[start : start + PROCESS_CHUNK])


def enqueue_deliveries(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        deliver.delay(delivery_id)
