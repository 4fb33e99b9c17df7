"""Delivery overhead in the database stays flat: a batch costs the same few queries at any size,
whatever policy the destination has (ordered lanes, rate limit, circuit breaker)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Attempt, Delivery, Destination, Message
from channels_app.pipeline import deliver, process
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def routed(channel, n: int) -> list[int]:
    ids = [
        Message.objects.create(
            channel=channel,
            raw=factories.adt_a01(f"Q-{i}", mrn=f"MRN{i}"),
            control_id=f"Q-{i}",
        ).id
        for i in range(n)
    ]
    return process.process_messages(ids)


def deliver_counting(delivery_ids: list[int]) -> tuple[deliver.Batch, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        batch = deliver.deliver(delivery_ids)
    statements = [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    return batch, statements


POLICIES = {
    "plain": {},
    # every delivery in its own lane, a limit the batch stays under, a breaker that is watching
    "policy": {"ordering_key": "PID-3.1", "rate_limit_per_s": 1000, "breaker_min_samples": 5},
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("batch_size", [1, 20])
def test_at_most_four_queries_per_delivered_message(batch_size, policy, fhir_sink, redis_client):
    channel = factories.channel(40100 + batch_size)
    # A generous timeout: a send that outlasts 5 s on a loaded CI machine is not what this counts.
    factories.fhir_destination(channel, fhir_sink.url, timeout_s=30, **POLICIES[policy])
    delivery_ids = routed(channel, batch_size)
    batch, statements = deliver_counting(delivery_ids)
    assert [o.status for o in batch.outcomes] == [Delivery.Status.DELIVERED] * batch_size, [
        a.error for a in Attempt.objects.exclude(error="")
    ]
    # claim, load bodies, insert attempts, settle: the same four whatever the batch size
    assert len(statements) <= 4, statements
    assert len(fhir_sink.requests) == batch_size


def test_a_batch_that_opens_the_breaker_and_finishes_a_lane_stays_at_four(fhir_sink, redis_client):
    channel = factories.channel(40130)
    destination = factories.fhir_destination(
        channel, fhir_sink.url, ordering_key="MSH-3", breaker_min_samples=1, max_attempts=1
    )
    first, second = routed(channel, 2)  # one sender: one lane, the second waits for the first
    fhir_sink.fail_next(1, 503)
    batch, statements = deliver_counting([first, second])
    assert len(statements) <= 4, statements
    assert [o.status for o in batch.outcomes] == [Delivery.Status.FAILED]
    assert batch.ready == [second] and list(batch.opened) == [destination.pk]
    destination.refresh_from_db()
    assert destination.breaker_state == Destination.BreakerState.OPEN


def test_held_and_deferred_deliveries_cost_two_queries(fhir_sink, redis_client):
    channel = factories.channel(40131)
    factories.fhir_destination(channel, fhir_sink.url, rate_limit_per_s=0.5)
    delivery_ids = routed(channel, 5)
    first, statements = deliver_counting(delivery_ids)
    statuses = sorted(o.status for o in first.outcomes)
    assert statuses == [Delivery.Status.DELIVERED] + [Delivery.Status.PENDING] * 4
    Delivery.objects.filter(status=Delivery.Status.PENDING).update(next_attempt_at=timezone.now())
    again, statements = deliver_counting(delivery_ids)
    assert [o.status for o in again.outcomes] == [Delivery.Status.PENDING] * 4
    assert len(statements) == 2, statements  # claim and settle: nothing to load, nothing sent
    assert len(fhir_sink.requests) == 1
    assert set(Delivery.objects.values_list("attempt_count", flat=True)) == {0, 1}
