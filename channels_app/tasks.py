"""Thin Celery tasks: take ids, call the pipeline, enqueue the next stage."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime

from celery import shared_task
from celery.signals import task_prerun, worker_process_init
from django.db import connections
from django.utils import timezone

from channels_app import alerts, stats
from channels_app.events import (
    enqueue_deliveries,
    enqueue_processing,
    retry_alert_notice,
    start_replay_job,
)
from channels_app.models import Delivery
from channels_app.pipeline import control
from channels_app.pipeline import deliver as deliver_stage
from channels_app.pipeline import replay as replay_stage
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


@shared_task(acks_late=True)
def process_messages(message_ids: list[int]) -> int:
    delivery_ids = process_stage(message_ids)
    enqueue_deliveries(delivery_ids)
    return len(delivery_ids)


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver(self, delivery_ids: list[int]) -> dict[str, int]:
    batch = deliver_stage.deliver(delivery_ids)
    # What the batch unblocked goes now: the next of each finished lane head, and the deliveries
    # a closing breaker releases; an opening breaker is looked at again after its cooldown.
    enqueue_deliveries(batch.ready)
    if batch.closed:
        release_held.delay(batch.closed)
    for destination_id, cooldown_s in batch.opened.items():
        release_held.apply_async(args=[[destination_id]], countdown=cooldown_s)
    # Each row's next_attempt_at lets the sweeper redo a countdown lost with Redis.
    # Over the rate limit: back when the bucket has refilled (one task per moment).
    deferred: dict[datetime, list[int]] = defaultdict(list)
    for o in batch.outcomes:
        if o.status == Delivery.Status.PENDING:
            deferred[o.retry_at].append(o.delivery_id)
    for retry_at, ids in deferred.items():
        deliver.apply_async(args=[ids], countdown=_seconds_until(retry_at))
    retrying = [o for o in batch.outcomes if o.status == Delivery.Status.RETRY]
    if retrying:
        wait = _seconds_until(retrying[0].retry_at)
        raise self.retry(args=[[o.delivery_id for o in retrying]], countdown=wait)
    return dict(Counter(o.status for o in batch.outcomes))


@shared_task(acks_late=True, time_limit=3600)
def replay_job(job_id: int) -> dict | None:
    """A bulk replay, batch after batch; a restarted task carries on where the last one stopped."""
    job = replay_stage.run_job(job_id)
    return None if job is None else {"done": job.done, "total": job.total, "state": job.state}


@shared_task(acks_late=True)
def release_held(destination_ids: list[int] | None = None) -> int:
    """Send again what was held QUEUED where the hold is over (breaker cooled down or closed)."""
    return len(control.release(destination_ids))


def _seconds_until(when: datetime) -> float:
    return max(0.0, (when - timezone.now()).total_seconds())


@shared_task
def sweep() -> dict:
    swept = sweep_stage()  # includes QUEUED deliveries whose hold is over
    enqueue_processing(swept.message_ids)
    enqueue_deliveries(swept.delivery_ids)
    for job_id in replay_stage.stalled_jobs():  # a bulk replay whose task was lost
        start_replay_job(job_id)
    if swept.message_ids or swept.delivery_ids:
        log.warning(
            "sweeper re-enqueued %d message(s) and %d deliverie(s)",
            len(swept.message_ids),
            len(swept.delivery_ids),
        )
    return {"messages": len(swept.message_ids), "deliveries": len(swept.delivery_ids)}


@shared_task
def evaluate_alerts() -> dict[str, int]:
    """Alerts (beat): open and resolve alerts by their rules, one notice per move; a notice
    whose retry was lost (Redis restarted) is enqueued again."""
    notices = alerts.evaluate()
    for notice_id in alerts.lost_notices():
        retry_alert_notice(notice_id, 0)
    return dict(Counter(event for _, event in notices))


@shared_task(bind=True, max_retries=alerts.NOTICE_ATTEMPTS)
def send_alert_notice(self, notice_id: int) -> str:
    """Alerts: another attempt at a notice that failed, again with Celery's retry and a doubling
    countdown until it is sent or its attempts (counted on the row) are spent."""
    tried = alerts.send_notice(notice_id)
    if tried.outcome == alerts.RETRY:
        raise self.retry(countdown=tried.retry_in)
    return tried.outcome


@shared_task
def rollup_stats() -> int:
    """Statistics (beat): closed minutes from Redis into PostgreSQL, so charts outlive Redis."""
    return stats.rollup()


@shared_task(time_limit=3600)
def prune_bodies() -> dict[str, int]:
    """Retention (beat): bodies older than their channel's retention_days are pruned in committed
    batches, so a run cut short loses nothing and the next one carries on; dedupe entries past
    their window are forgotten."""
    from channels_app.retention import forget_expired_keys, prune

    pruned = {str(channel_id): count for channel_id, count in prune().items()}
    forget_expired_keys()
    return pruned
