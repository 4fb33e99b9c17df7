"""Steering a bulk replay with real Celery workers and a real HTTP destination: a dry run that
changes nothing, destinations chosen, a rate kept, pause / resume / cancel, and results counted
per message from what actually happened (a destination still down is "failed again", a message
that still does not parse is "errored again")."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from channels_app import tasks
from channels_app.models import Delivery, Message, ReplayItem, ReplayJob
from channels_app.pipeline import replay
from tests import factories
from tests.channels_app.test_replay_bulk import failed_messages
from tests.support import IdempotentSink, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

Outcome = ReplayItem.Outcome


@pytest.fixture
def sink():
    sink = IdempotentSink(free_port()).start()
    yield sink
    sink.stop()


def down_url() -> str:
    """A destination nobody answers at (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/fhir"


def settled_outcomes(job: ReplayJob, timeout: float = 60) -> dict[str, int]:
    def settled():
        current = ReplayJob.objects.get(pk=job.pk)
        counts = replay.outcomes(current)
        return current.is_over and replay.is_settled(counts) and counts

    return wait_for(settled, timeout=timeout, interval=0.2, what="every message settled")


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {outcome: n for outcome, n in counts.items() if n}


def test_a_destination_still_down_is_counted_failed_again_not_replayed(celery_worker, sink):
    """The bug this replaces: "8 replayed" while all 8 stayed failed."""
    up = failed_messages(5, sink.url)
    down = failed_messages(3, down_url())
    refusing = Delivery.objects.filter(message_id=down[0]).get().destination
    refusing.max_attempts, refusing.backoff_max_s = 2, 0.2  # gives up quickly
    refusing.save()

    job = replay.start_job([*up, *down], "redeliver", selection={"ids": 8}, rate=100)

    counts = settled_outcomes(job)
    assert nonzero(counts) == {Outcome.DELIVERED: 5, Outcome.FAILED: 3}
    job.refresh_from_db()
    assert (job.state, job.replayed, job.done) == ("done", 8, 8)
    failed_again = job.items.filter(outcome=Outcome.FAILED).values_list("message_id", flat=True)
    assert sorted(failed_again) == sorted(down)
    assert len(sink.effects_by_control_id()) == 5


def test_a_reprocess_that_still_errors_is_counted_errored_again(celery_worker, sink):
    channel = factories.channel(free_port())
    factories.fhir_destination(channel, sink.url)
    fixed = [
        Message.objects.create(
            channel=channel, raw=factories.adt_a01(f"FIXED-{i}"), status=Message.Status.ERROR
        ).pk
        for i in range(3)
    ]
    broken = [
        Message.objects.create(
            channel=channel, raw=b"this is not HL7 at all", status=Message.Status.ERROR
        ).pk
        for _ in range(2)
    ]

    job = replay.start_job([*fixed, *broken], "reprocess", selection={"ids": 5})

    counts = settled_outcomes(job)
    assert nonzero(counts) == {Outcome.DELIVERED: 3, Outcome.ERRORED: 2}
    errored = job.items.filter(outcome=Outcome.ERRORED).values_list("message_id", flat=True)
    assert sorted(errored) == sorted(broken)
    assert Message.objects.filter(pk__in=broken, status=Message.Status.ERROR).count() == 2


def test_a_settled_outcome_stays_what_the_job_saw(redis_client):
    """A later replay that succeeds does not rewrite an earlier job's "failed again"."""
    ids = failed_messages(1, down_url())
    job = replay.start_job(ids, "redeliver", selection={"ids": 1})
    Delivery.objects.filter(message_id__in=ids).update(status="FAILED")
    assert replay.outcomes(job)[Outcome.FAILED] == 1
    Delivery.objects.filter(message_id__in=ids).update(status="DELIVERED")
    assert replay.outcomes(job)[Outcome.FAILED] == 1


def test_the_dry_run_counts_without_changing_anything(redis_client):
    here = down_url()
    ids = failed_messages(4, here)
    Delivery.objects.filter(message_id=ids[0]).update(status="DELIVERED")
    Message.objects.filter(pk=ids[1]).update(pruned_at=timezone.now())
    before = list(Delivery.objects.order_by("id").values_list("status", flat=True))

    preview = replay.preview(
        Message.objects.filter(pk__in=[*ids, 10**12]), "redeliver", asked=len(ids) + 1
    )

    assert preview["matching"] == 4 and preview["replay"] == 2
    assert preview["skipped"] == {replay.NOT_FAILED: 1, replay.PRUNED: 1, replay.NOT_FOUND: 1}
    destination = Delivery.objects.get(message_id=ids[2]).destination
    assert preview["destinations"] == [
        {"id": destination.pk, "name": destination.name, "messages": 2}
    ]
    assert list(Delivery.objects.order_by("id").values_list("status", flat=True)) == before
    assert not ReplayJob.objects.exists()
    # What it counted is what a replay then takes.
    result = replay.replay(ids, "redeliver")
    assert len(result.replayed) == preview["replay"]


def test_redeliver_goes_only_to_the_destinations_chosen(redis_client):
    ids = failed_messages(3, down_url())
    first = Delivery.objects.filter(message_id=ids[0]).get().destination
    other = factories.fhir_destination(first.channel, down_url(), name="Other")
    for message_id in ids:
        Delivery.objects.create(message_id=message_id, destination=other, status="FAILED")

    preview = replay.preview(Message.objects.filter(pk__in=ids), "redeliver", [other.pk])
    assert [d["id"] for d in preview["destinations"]] == [other.pk]
    job = replay.start_job(ids, "redeliver", selection={"ids": 3}, destinations=[other.pk])

    assert job.replayed == 3
    assert set(Delivery.objects.filter(destination=other).values_list("status", flat=True)) == {
        "PENDING"
    }
    assert set(Delivery.objects.filter(destination=first).values_list("status", flat=True)) == {
        "FAILED"
    }  # not chosen: left as it was
    with pytest.raises(ValueError, match="choose destinations with redeliver"):
        replay.start_job(ids, "reprocess", selection={"ids": 3}, destinations=[other.pk])


def progress_of(job: ReplayJob) -> ReplayJob:
    return ReplayJob.objects.defer("message_ids").get(pk=job.pk)


def test_a_rated_job_keeps_its_rate(celery_worker):
    ids = failed_messages(12, down_url())
    started = time.monotonic()
    job = replay.start_job(ids, "redeliver", selection={"ids": 12}, rate=4)
    seen = []

    def finished():
        current = progress_of(job)
        seen.append((time.monotonic() - started, current.done))
        return current.state == "done"

    wait_for(finished, timeout=30, interval=0.1, what="the rated job's end")
    took = time.monotonic() - started
    # 4 a second: three steps of 4, a second apart (2 s at least; generous for a loaded box).
    assert 1.8 <= took <= 15, seen
    assert {done for _, done in seen} <= {0, 4, 8, 12}
    first_full = min(at for at, done in seen if done == 12)
    assert first_full >= 1.8, seen


def test_pause_stops_progress_resume_carries_on_and_cancel_stops_for_good(celery_worker):
    ids = failed_messages(40, down_url())
    job = replay.start_job(ids, "redeliver", selection={"ids": 40}, rate=4)
    wait_for(lambda: progress_of(job).done >= 4, timeout=20, what="first steps")

    paused = replay.pause(job.pk)
    assert paused.state == "paused"
    time.sleep(2.5)  # a rated job steps every second: two steps would have come by now
    assert progress_of(job).done == paused.done
    assert job.pk not in replay.stalled_jobs(now=timezone.now() + replay.STALLED_AFTER * 10)
    with pytest.raises(replay.NotNow, match="paused"):
        replay.pause(job.pk)

    replay.resume(job.pk)
    wait_for(lambda: progress_of(job).done >= paused.done + 8, timeout=20, what="resumed steps")

    cancelled = replay.cancel(job.pk)
    assert cancelled.state == "cancelled" and cancelled.finished_at
    assert cancelled.done < 40
    tasks.sweep()  # the sweeper never picks up a cancelled job
    time.sleep(2.5)
    assert progress_of(job).done == cancelled.done
    assert job.items.count() == cancelled.done  # each message taken has its result row
    with pytest.raises(replay.NotNow, match="cancelled"):
        replay.resume(job.pk)


def test_two_task_chains_of_one_rated_job_do_not_double_its_rate(celery_worker):
    """A resume (or the sweeper) may start a chain while the first is still scheduled: the
    second finds the next step not due yet and steps aside."""
    ids = failed_messages(12, down_url())
    started = time.monotonic()
    job = replay.start_job(ids, "redeliver", selection={"ids": 12}, rate=4)
    wait_for(lambda: progress_of(job).done >= 4, timeout=20, what="first step")
    for _ in range(3):
        tasks.replay_job.delay(job.pk)
    wait_for(lambda: progress_of(job).state == "done", timeout=30, what="the job's end")
    assert time.monotonic() - started >= 1.8


def test_a_job_step_costs_the_same_statements_for_20_or_400_messages(redis_client, monkeypatch):
    """Results are recorded per batch (one INSERT), and read per job (one UPDATE, one count)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(replay, "INLINE_MAX", 1000)
    counts = []
    for n in (20, 400):
        ids = failed_messages(n, down_url())
        with CaptureQueriesContext(connection) as queries:
            job = replay.start_job(ids, "redeliver", selection={"ids": n})
            assert replay.outcomes(job)[Outcome.IN_PROGRESS] == n
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1] <= 20
