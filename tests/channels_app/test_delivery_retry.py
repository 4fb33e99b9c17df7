"""A destination that is down, flaky or refusing: retried with backoff, delivered once, or failed."""

from __future__ import annotations

import time

import pytest

from adapters.transports.mllp import MLLPClient
from channels_app.models import Attempt, Delivery
from tests import factories
from tests.support import FhirSink, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_destination_down_then_up_is_retried_and_delivered_once(mllp_port, listener, celery_worker):
    sink = FhirSink(free_port())  # not started: connections are refused
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, sink.url, backoff_base_s=0.3, backoff_max_s=0.6)
    listener(channel)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("DOWN-1"))
    wait_for(
        lambda: Attempt.objects.filter(outcome=Attempt.Outcome.TRANSIENT).count() >= 2,
        what="two failed tries",
    )
    delivery = Delivery.objects.get()
    assert delivery.status in (Delivery.Status.RETRY, Delivery.Status.SENDING)
    assert "cannot reach" in Attempt.objects.first().error
    sink.start()
    try:
        wait_for(
            lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).exists(),
            what="delivered after recovery",
        )
        time.sleep(1.0)  # a duplicate send, if any, would land now
        assert len(sink.requests) == 1 and sum(sink.effects.values()) == 1
        delivery.refresh_from_db()
        assert delivery.attempt_count == Attempt.objects.count() >= 3
    finally:
        sink.stop()


def test_503_is_retried_and_a_400_fails_at_once_with_its_reason(
    mllp_port, listener, celery_worker, fhir_sink
):
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, fhir_sink.url)
    listener(channel)
    fhir_sink.fail_next(2, 503)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("FLAKY-1"))
        wait_for(
            lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).exists(),
            what="delivered",
        )
        fhir_sink.fail_next(1, 400)
        client.send(factories.adt_a01("REJECTED-1"))
    failed = wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.FAILED).first(),
        what="permanent failure",
    )
    assert failed.message.control_id == "REJECTED-1" and failed.attempt_count == 1
    assert "400" in failed.last_error and "sink says 400" in failed.last_error
    assert [a.outcome for a in Attempt.objects.filter(delivery__message__control_id="FLAKY-1")] == [
        "TRANSIENT",
        "TRANSIENT",
        "SUCCESS",
    ]


def test_gives_up_after_max_attempts(mllp_port, listener, celery_worker, fhir_sink):
    channel = factories.channel(mllp_port)
    factories.fhir_destination(
        channel, fhir_sink.url, max_attempts=3, backoff_base_s=0.1, backoff_max_s=0.2
    )
    listener(channel)
    fhir_sink.fail_next(10, 503)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("NEVER-1"))
    failed = wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.FAILED).first(), what="gave up"
    )
    assert failed.attempt_count == 3 and "gave up after 3 attempts" in failed.last_error
    assert len(fhir_sink.requests) == 3
