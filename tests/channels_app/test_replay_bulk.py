"""Replaying hundreds at once: one job, batched statements, progress a caller can poll to done,
and every message delivered once at the destination."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Attempt, Delivery, Message, ReplayJob
from channels_app.pipeline import replay
from tests import factories
from tests.support import IdempotentSink, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def failed_messages(n: int, url: str) -> list[int]:
    """``n`` routed messages whose one delivery failed for good (as a 400 would leave them)."""
    channel = factories.channel(free_port())
    destination = factories.fhir_destination(channel, url)
    messages = Message.objects.bulk_create(
        Message(
            channel=channel,
            raw=factories.adt_a01(f"BULK-{i}"),
            control_id=f"BULK-{i}",
            status=Message.Status.PROCESSED,
            canonical={
                "resourceType": "Bundle",
                "type": "transaction",
                "identifier": {"value": f"BULK-{i}"},
                "entry": [],
            },
        )
        for i in range(n)
    )
    deliveries = Delivery.objects.bulk_create(
        Delivery(message=m, destination=destination, status="FAILED", attempt_count=1)
        for m in messages
    )
    Attempt.objects.bulk_create(
        Attempt(
            delivery=d,
            number=1,
            started_at=timezone.now(),
            duration_ms=1.0,
            outcome=Attempt.Outcome.PERMANENT,
            status_code=400,
        )
        for d in deliveries
    )
    return [m.pk for m in messages]


def test_a_bulk_replay_runs_as_a_job_whose_progress_reaches_done(celery_worker, monkeypatch):
    monkeypatch.setattr(replay, "BATCH", 100)  # four committed steps for 400 messages
    sink = IdempotentSink(free_port()).start()
    try:
        ids = failed_messages(400, sink.url)
        job = replay.start_job(ids, "redeliver", selection={"ids": len(ids)})
        assert (job.state, job.total) == (ReplayJob.State.RUNNING, 400)

        seen = []

        def finished():
            current = ReplayJob.objects.get(pk=job.pk)
            seen.append(current.done)
            return current.state != ReplayJob.State.RUNNING and current

        job = wait_for(finished, timeout=60, interval=0.02, what="the job to finish")
        assert (job.state, job.done, job.total, job.replayed) == ("done", 400, 400, 400)
        assert job.skipped == {} and job.percent == 100
        assert seen == sorted(seen) and all(done % 100 == 0 for done in seen)

        wait_for(
            lambda: Delivery.objects.filter(status="DELIVERED").count() == 400,
            timeout=60,
            what="every replayed delivery delivered",
        )
        time.sleep(0.5)
        effects = sink.effects_by_control_id()
        assert len(effects) == 400 and set(effects.values()) == {1}
        assert Attempt.objects.count() == 800  # the failed tries are kept
    finally:
        sink.stop()


def test_a_replay_costs_the_same_statements_for_20_or_400_messages(redis_client):
    """Batched: one statement per batch, whatever the number of messages in it."""
    small = failed_messages(20, "http://127.0.0.1:9/fhir")
    large = failed_messages(400, "http://127.0.0.1:9/fhir")
    counts = []
    for ids in (small, large):
        with CaptureQueriesContext(connection) as queries:
            result = replay.replay(ids, "redeliver")
        assert len(result.replayed) == len(ids)
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1] <= 3


def test_a_job_skips_what_is_no_longer_failed_and_says_why(redis_client, monkeypatch):
    monkeypatch.setattr(replay, "INLINE_MAX", 1000)  # small enough to run in the caller
    monkeypatch.setattr(replay, "BATCH", 2)  # the skips land in different batches
    ids = failed_messages(5, "http://127.0.0.1:9/fhir")
    Delivery.objects.filter(message_id=ids[0]).update(status="DELIVERED")

    job = replay.start_job([*ids, 10**12], "redeliver", selection={"ids": 6})

    assert (job.state, job.done, job.total, job.replayed) == ("done", 6, 6, 4)
    assert job.skipped == {replay.NOT_FAILED: 1, replay.NOT_FOUND: 1}
    assert Delivery.objects.filter(status="PENDING").count() == 4


def test_the_sweeper_resumes_a_job_whose_task_was_lost(celery_worker, monkeypatch):
    """Redis lost the task (or its runner died): the job stops moving, the sweeper starts it again
    and it carries on from where it stopped."""
    from channels_app import tasks

    monkeypatch.setattr(replay, "BATCH", 2)
    ids = failed_messages(5, "http://127.0.0.1:9/fhir")
    stale = timezone.now() - replay.STALLED_AFTER * 2
    job = ReplayJob.objects.create(
        mode="redeliver", message_ids=ids, total=5, done=2, replayed=2, updated_at=stale
    )  # as a runner that died after two messages left it
    fresh = ReplayJob.objects.create(mode="redeliver", message_ids=ids, total=5)
    assert replay.stalled_jobs() == [job.pk]

    tasks.sweep()

    job = wait_for(
        lambda: ReplayJob.objects.filter(pk=job.pk, state="done").first(), what="job resumed"
    )
    assert (job.done, job.replayed) == (5, 5)
    # The two the dead runner had counted are not taken again.
    first_two = Delivery.objects.filter(message_id__in=ids[:2])
    assert set(first_two.values_list("status", flat=True)) == {"FAILED"}
    assert ReplayJob.objects.get(pk=fresh.pk).state == "running"  # still moving: left alone
