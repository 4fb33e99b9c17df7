"""Thin Celery tasks: take ids, call the pipeline, enqueue the next stage."""

from __future__ import annotations

import logging
from collections import Counter

from celery import shared_task
from celery.signals import task_prerun, worker_process_init
from django.db import connections
from django.utils import timezone

from channels_app.pipeline import deliver as deliver_stage
from channels_app.pipeline.process import process_messages as process_stage
from channels_app.pipeline.sweep import sweep as sweep_stage

log = logging.getLogger(__name__)


@task_prerun.connect
def drop_unusable_connections(**_) -> None:
    """A connection broken by a database restart, or past CONN_MAX_AGE, is replaced before use."""
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()


@worker_process_init.connect
def warm_up(**_) -> None:
    """Load the maps and compile the validation schema before the first message, not during it."""
    from adapters import mapping

    mapping.warm_up()


# One task carries many ids: the listener batches messages per commit, processing batches
# deliveries; per-message task overhead would otherwise dominate.
PROCESS_CHUNK = 200
DELIVER_CHUNK = 50


@shared_task(acks_late=True)
def process_messages(message_ids: list[int]) -> int:
    delivery_ids = process_stage(message_ids)
    enqueue_deliveries(delivery_ids)
    return len(delivery_ids)


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver(self, delivery_ids: list[int]) -> dict[str, int]:
    outcomes = deliver_stage.deliver(delivery_ids)
    retrying = [o for o in outcomes if o.retry_at is not None]
    if retrying:
        # Celery schedules the next try; each row's next_attempt_at lets the sweeper redo it if
        # this countdown is lost with Redis.
        wait = max(0.0, (retrying[0].retry_at - timezone.now()).total_seconds())
        raise self.retry(args=[[o.delivery_id for o in retrying]], countdown=wait)
    return dict(Counter(o.status for o in outcomes))


@shared_task
def sweep() -> dict:
    swept = sweep_stage()
    enqueue_processing(swept.message_ids)
    enqueue_deliveries(swept.delivery_ids)
    if swept.message_ids or swept.delivery_ids:
        log.warning(
            "sweeper re-enqueued %d message(s) and %d deliverie(s)",
            len(swept.message_ids),
            len(swept.delivery_ids),
        )
    return {"messages": len(swept.message_ids), "deliveries": len(swept.delivery_ids)}


def enqueue_processing(message_ids: list[int]) -> None:
    for start in range(0, len(message_ids), PROCESS_CHUNK):
        process_messages.delay(message_ids[start : start + PROCESS_CHUNK])


def enqueue_deliveries(delivery_ids: list[int]) -> None:
    for start in range(0, len(delivery_ids), DELIVER_CHUNK):
        deliver.delay(delivery_ids[start : start + DELIVER_CHUNK])
