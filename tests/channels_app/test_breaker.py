"""The circuit breaker: a failing destination opens it, deliveries wait QUEUED without attempts,
one probe goes out after the cooldown, and its success closes it and sends the rest once."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app.models import Attempt, Delivery, Destination, Message
from channels_app.pipeline import breaker, control, deliver, process, sweep
from tests import factories
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

COOLDOWN_S = 3.0


@pytest.fixture
def flaky(mllp_port, listener, celery_worker, fhir_sink):
    """A channel whose destination opens its breaker after 3 attempts, half of them failed."""
    channel = factories.channel(mllp_port)
    destination = factories.fhir_destination(
        channel,
        fhir_sink.url,
        max_attempts=0,  # retried without limit: only the breaker holds them
        backoff_base_s=0.2,
        backoff_max_s=0.4,
        breaker_min_samples=3,
        breaker_error_rate=0.5,
        breaker_window_s=30,
        breaker_cooldown_s=COOLDOWN_S,
    )
    listener(channel)
    return destination


def state(destination: Destination) -> str:
    destination.refresh_from_db()
    return destination.breaker_state


def test_opens_holds_without_attempts_probes_after_cooldown_and_closes(flaky, mllp_port, fhir_sink):
    fhir_sink.fail_next(1000, 503)  # the destination is down until healed below
    for i in range(3):
        assert b"MSA|AA" in send(mllp_port, factories.adt_a01(f"DOWN-{i}"))
    wait_for(lambda: state(flaky) == "open", what="the breaker to open")
    opened_at = flaky.breaker_changed_at

    for i in range(5):  # the destination is "down": these are acknowledged and held
        assert b"MSA|AA" in send(mllp_port, factories.adt_a01(f"HELD-{i}"))
    held = Delivery.objects.filter(message__control_id__startswith="HELD-")
    wait_for(
        lambda: list(held.values_list("status", flat=True)) == ["QUEUED"] * 5,
        what="the new deliveries held QUEUED",
    )
    assert set(held.values_list("attempt_count", flat=True)) == {0}
    assert not Attempt.objects.filter(delivery__in=held).exists()
    with fhir_sink.lock:
        fhir_sink.failures.clear()  # the destination is back: the probe will succeed

    wait_for(
        lambda: Delivery.objects.filter(status="DELIVERED").count() == 8,
        timeout=30,
        what="all delivered after the probe",
    )
    assert state(flaky) == "closed"
    # A try claimed just before it opened may start and land after; none starts while it is
    # open, and the first one after the cooldown is the lone probe: the rest wait for its answer.
    after = list(
        Attempt.objects.filter(started_at__gt=opened_at + timedelta(seconds=0.5)).order_by(
            "started_at", "id"
        )
    )
    probe, rest = after[0], after[1:]
    assert probe.started_at >= opened_at + timedelta(seconds=COOLDOWN_S)
    assert probe.status_code == 200 and len(rest) >= 7
    probe_answered = probe.started_at + timedelta(milliseconds=probe.duration_ms)
    assert all(a.started_at >= probe_answered for a in rest)
    time.sleep(0.5)  # a duplicate send, if any, would land now
    assert len(fhir_sink.effects) == 8 and set(fhir_sink.effects.values()) == {1}
    assert not Delivery.objects.exclude(status="DELIVERED").exists()


def test_a_failed_probe_opens_it_again_for_another_cooldown(flaky, mllp_port, fhir_sink):
    fhir_sink.fail_next(1000, 503)  # the destination is down until healed below
    for i in range(3):
        send(mllp_port, factories.adt_a01(f"DOWN-{i}"))
    wait_for(lambda: state(flaky) == "open", what="the breaker to open")
    # How many tries went out by the time all three are held (none in flight, no probe yet):
    # failures sent before the breaker opened may outnumber three on a loaded machine.
    held = Delivery.objects.filter(message__control_id__startswith="DOWN-")

    def all_held():
        tried = len(fhir_sink.requests)  # read before the rows: a probe claimed later is not in
        statuses = set(held.values_list("status", flat=True))
        return (
            statuses == {"QUEUED"} and state(flaky) == "open" and (tried, flaky.breaker_changed_at)
        )

    tried, opened_at = wait_for(all_held, what="all three held by the open breaker")
    wait_for(
        lambda: state(flaky) == "open" and flaky.breaker_changed_at > opened_at,
        timeout=COOLDOWN_S + 30,  # the probe waits for the cooldown, then a worker: slow in CI
        what="the probe to fail and open the breaker again",
    )
    assert len(fhir_sink.requests) - tried == 1, "one probe, and nothing else, after the cooldown"
    with fhir_sink.lock:
        fhir_sink.failures.clear()  # the destination is back
    wait_for(
        lambda: Delivery.objects.filter(status="DELIVERED").count() == 3,
        timeout=COOLDOWN_S * 2 + 15,
        what="delivered after the second cooldown",
    )
    assert state(flaky) == "closed" and set(fhir_sink.effects.values()) == {1}


def test_permanent_refusals_do_not_open_it(flaky, mllp_port, fhir_sink):
    fhir_sink.fail_next(4, 400)  # the messages' fault, not the destination's
    for i in range(4):
        send(mllp_port, factories.adt_a01(f"BAD-{i}"))
    wait_for(lambda: Delivery.objects.filter(status="FAILED").count() == 4, what="four refused")
    send(mllp_port, factories.adt_a01("GOOD-1"))
    wait_for(lambda: Delivery.objects.filter(status="DELIVERED").count() == 1, what="delivered")
    assert state(flaky) == "closed"


# --- The decision itself, without Redis or a database.

POLICY = breaker.Policy(1, breaker.CLOSED, error_rate=0.5, min_samples=4, window_s=60)


@pytest.mark.parametrize(
    ("samples", "failures", "opens"),
    [(3, 3, False), (4, 1, False), (4, 2, True), (10, 9, True)],
)
def test_opens_at_the_threshold_with_enough_samples(samples, failures, opens):
    transition = breaker.decide(POLICY, breaker.Tally(failures=1), samples, failures)
    assert (transition is not None) == opens


def test_the_probe_decides_and_zero_samples_disables():
    half_open = breaker.Policy(1, breaker.HALF_OPEN, 0.5, 4, 60)
    closes = breaker.decide(half_open, breaker.Tally(probe="success"), 1, 0)
    assert (closes.from_state, closes.to_state) == (breaker.HALF_OPEN, breaker.CLOSED)
    reopens = breaker.decide(half_open, breaker.Tally(probe="failure"), 5, 5)
    assert (reopens.from_state, reopens.to_state) == (breaker.HALF_OPEN, breaker.OPEN)
    off = breaker.Policy(1, breaker.CLOSED, 0.5, 0, 60)
    assert breaker.decide(off, breaker.Tally(failures=9), 9, 9) is None


def test_the_sweeper_releases_one_probe_once_the_cooldown_is_over(fhir_sink):
    """The task that should have probed after the cooldown was lost: the sweeper releases the
    oldest held delivery as the probe; the claim sends one probe only; its success releases
    the rest."""
    channel = factories.channel(40150)
    destination = factories.fhir_destination(channel, fhir_sink.url, breaker_cooldown_s=60)
    ids = process.process_messages(
        [
            Message.objects.create(channel=channel, raw=factories.adt_a01(f"S-{i}")).id
            for i in range(3)
        ]
    )
    opened = timezone.now()
    Destination.objects.filter(pk=destination.pk).update(
        breaker_state="open", breaker_changed_at=opened
    )
    assert [o.status for o in deliver.deliver(ids).outcomes] == ["QUEUED"] * 3
    assert sweep.sweep().delivery_ids == []  # cooling down: held

    Destination.objects.filter(pk=destination.pk).update(  # the cooldown is over
        breaker_changed_at=opened - timedelta(seconds=61)
    )
    first, second, third = sorted(ids)
    assert sweep.sweep().delivery_ids == [first]  # the oldest, as the probe
    assert sweep.sweep().delivery_ids == [second]  # its task lost too? another candidate...

    batch = deliver.deliver([first, second])  # ...but the claim lets exactly one through
    assert sorted((o.delivery_id, o.status) for o in batch.outcomes) == [
        (first, "DELIVERED"),
        (second, "QUEUED"),
    ]
    assert len(fhir_sink.requests) == 1
    assert batch.closed == [destination.pk] and state(destination) == "closed"
    assert control.release(batch.closed) == [second, third]
