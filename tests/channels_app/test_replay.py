"""Replay what failed: the same payload again (redeliver) or processed again (reprocess), through
the real worker, once at the destination, with every earlier attempt kept."""

from __future__ import annotations

import copy
import json
import time

import pytest

from adapters.transports.mllp import MLLPClient
from channels_app.models import Attempt, Channel, Delivery, Message
from channels_app.pipeline import replay
from tests import factories
from tests.support import IdempotentSink, free_port, inbound_client, post_inbound, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sink():
    sink = IdempotentSink(free_port()).start()
    yield sink
    sink.stop()


@pytest.fixture
def channel(mllp_port, listener, celery_worker, sink):
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, sink.url, max_attempts=2, backoff_base_s=0.1)
    listener(channel)
    return channel


def send(port: int, control_id: str) -> None:
    with MLLPClient("127.0.0.1", port) as client:
        client.send(factories.adt_a01(control_id))


def failed_delivery() -> Delivery:
    return wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.FAILED).first(), what="a failure"
    )


def test_redeliver_after_the_destination_is_fixed_delivers_once_and_keeps_history(
    channel, mllp_port, sink
):
    sink.fail_next(1, 400)  # refused for good: the delivery fails at once
    send(mllp_port, "REPLAY-1")
    delivery = failed_delivery()
    assert delivery.attempt_count == 1 and sink.effects_by_control_id() == {}

    result = replay.replay([delivery.message_id], "redeliver")  # the destination is fixed now

    assert result.counts() == {"mode": "redeliver", "replayed": 1, "skipped": {}}
    wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, status="DELIVERED").exists(),
        what="delivered after the replay",
    )
    time.sleep(0.5)  # a duplicate send, if any, would land now
    assert sink.effects_by_control_id() == {"REPLAY-1": 1}
    assert sink.status_counts() == {400: 1, 200: 1}
    keys = {r["key"] for r in sink.requests}
    assert keys == {delivery.idempotency_key}  # the same key both times
    attempts = list(Attempt.objects.filter(delivery=delivery).values_list("number", "outcome"))
    assert attempts == [(1, "PERMANENT"), (2, "SUCCESS")]
    delivery.refresh_from_db()
    assert (delivery.attempt_count, delivery.attempts_at_replay) == (2, 1)


def test_a_replayed_delivery_gets_a_fresh_attempt_budget(channel, mllp_port, sink):
    sink.fail_next(2, 503)  # max_attempts is 2: the delivery gives up
    send(mllp_port, "BUDGET-1")
    delivery = failed_delivery()
    assert "gave up after 2 attempts" in delivery.last_error

    sink.fail_next(1, 503)  # still flaky: the first try after the replay fails, the next succeeds
    replay.replay([delivery.message_id], "redeliver")

    wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, status="DELIVERED").exists(),
        what="delivered within the new budget",
    )
    numbers = list(Attempt.objects.filter(delivery=delivery).values_list("number", flat=True))
    assert numbers == [1, 2, 3, 4] and sink.effects_by_control_id() == {"BUDGET-1": 1}


# A JSON channel whose map reads the sender's MRN from the wrong key: every message fails to map
# until an analyst corrects the map, then a reprocess uses the corrected one.
MISREAD_MAP = {
    "resources": ["Patient"],
    "key": "%input.orderId",
    "rules": [
        {
            "name": "mrn",
            "source": "%input.patient.medicalRecord",
            "target": "Patient.identifier[0].value",
            "required": True,
        },
        {"source": "%input.patient.last", "target": "Patient.name[0].family"},
    ],
}


@pytest.fixture
def json_channel(live_server, celery_worker, sink):
    channel = factories.channel(
        0,
        source_type=Channel.SourceType.HTTP,
        source_config={"inbound": "json", "json_map": MISREAD_MAP},
    )
    factories.fhir_destination(channel, sink.url)
    with inbound_client(live_server.url, "orders") as client:
        yield channel, client


def test_reprocess_an_error_after_the_mapping_is_fixed(json_channel, sink):
    channel, client = json_channel
    body = json.dumps({"orderId": "MAPFIX-1", "patient": {"mrn": "M-77", "last": "Ostrowska"}})
    response = post_inbound(client, channel, body.encode(), "application/json")
    assert response.status_code == 202, response.text
    message = wait_for(
        lambda: Message.objects.filter(status=Message.Status.ERROR).first(), what="a map error"
    )
    assert message.error_stage == "map" and not message.deliveries.exists()
    assert replay.replay([message.pk], "redeliver").counts()["skipped"] == {replay.NOT_ROUTED: 1}

    fixed = copy.deepcopy(MISREAD_MAP)
    fixed["rules"][0]["source"] = "%input.patient.mrn"
    channel.source_config = {"inbound": "json", "json_map": fixed}
    channel.save()
    result = replay.replay([message.pk], "reprocess")

    assert result.counts() == {"mode": "reprocess", "replayed": 1, "skipped": {}}
    wait_for(
        lambda: Delivery.objects.filter(message=message, status="DELIVERED").exists(),
        what="routed and delivered after the fix",
    )
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED and message.error_detail == ""
    assert list(sink.effects_by_control_id().values()) == [1]  # one message, applied once
    [bundle] = sink.bundles()
    [patient] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert patient["identifier"][0]["value"] == "M-77"  # read with the corrected map


def test_reprocess_of_a_failed_delivery_resets_it_instead_of_adding_one(channel, mllp_port, sink):
    sink.fail_next(1, 400)
    send(mllp_port, "REMAP-1")
    delivery = failed_delivery()

    replay.replay([delivery.message_id], "reprocess")

    wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, status="DELIVERED").exists(),
        what="delivered after reprocessing",
    )
    assert Delivery.objects.filter(message_id=delivery.message_id).count() == 1
    outcomes = list(Attempt.objects.filter(delivery=delivery).values_list("outcome", flat=True))
    assert outcomes == ["PERMANENT", "SUCCESS"]
    assert sink.effects_by_control_id() == {"REMAP-1": 1}


def test_what_did_not_fail_is_skipped_with_its_reason(channel, mllp_port, sink):
    send(mllp_port, "FINE-1")
    delivered = wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).first(),
        what="delivered",
    )
    missing = delivered.message_id + 1000

    for mode in replay.MODES:
        result = replay.replay([delivered.message_id, missing], mode)
        assert result.replayed == []
        assert result.counts()["skipped"] == {replay.NOT_FAILED: 1, replay.NOT_FOUND: 1}

    time.sleep(0.5)
    assert len(sink.requests) == 1 and Attempt.objects.count() == 1
    delivered.refresh_from_db()
    assert delivered.status == Delivery.Status.DELIVERED


def test_replaying_twice_at_once_replays_once(channel, mllp_port, sink):
    """The reset is a conditional UPDATE: the second replay finds nothing FAILED."""
    sink.fail_next(1, 400)
    send(mllp_port, "TWICE-1")
    delivery = failed_delivery()
    sink.hold_s = 0.5  # keep the replayed send on the wire while the second replay comes in

    first = replay.replay([delivery.message_id], "redeliver")
    second = replay.replay([delivery.message_id], "redeliver")

    assert (len(first.replayed), len(second.replayed)) == (1, 0)
    assert second.counts()["skipped"] == {replay.NOT_FAILED: 1}
    wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, status="DELIVERED").exists(),
        what="delivered",
    )
    assert Attempt.objects.filter(delivery=delivery).count() == 2
