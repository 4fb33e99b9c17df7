"""Routing rules on the message path: ORUs over a real MLLP socket, a real Celery worker, a real
FHIR peer; the decision and its reason stored on each message."""

from __future__ import annotations

import pytest

from channels_app.models import Delivery, Destination, Message, ReplayJob
from channels_app.pipeline import replay
from tests import factories
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FINAL_REPORT = "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()"


def settled(control_id: str) -> Message:
    return wait_for(
        lambda: (
            Message.objects.filter(control_id=control_id)
            .exclude(status=Message.Status.RECEIVED)
            .first()
        ),
        what=f"{control_id} processed",
    )


def test_a_final_report_is_routed_and_a_preliminary_one_filtered_with_its_reason(
    hub, mllp_port, fhir_sink
):
    destination = hub.destinations.get()
    destination.route_when = FINAL_REPORT
    destination.save()

    send(mllp_port, factories.oru_r01("FINAL-1", status="F"))
    send(mllp_port, factories.oru_r01("PRELIM-1", status="P"))

    final, preliminary = settled("FINAL-1"), settled("PRELIM-1")
    assert final.status == Message.Status.PROCESSED
    assert final.routing == [
        {
            "destination": destination.id,
            "destination_name": destination.name,
            "routed": True,
            "reason": f"`{FINAL_REPORT}` evaluated true",
        }
    ]
    wait_for(
        lambda: final.deliveries.filter(status=Delivery.Status.DELIVERED).exists(),
        what="final report delivered",
    )
    assert preliminary.status == Message.Status.FILTERED
    assert preliminary.routing[0]["routed"] is False
    assert preliminary.routing[0]["reason"] == f"`{FINAL_REPORT}` evaluated false"
    assert not preliminary.deliveries.exists()
    assert [b["identifier"]["value"] for b in fhir_sink.bundles()] == ["FINAL-1"]


def test_each_destination_is_decided_on_its_own(hub, mllp_port, fhir_sink):
    factories.fhir_destination(
        hub, fhir_sink.url, name="ADT only", route_when="%messageCode = 'ADT'"
    )
    send(mllp_port, factories.oru_r01("BOTH-1"))
    message = settled("BOTH-1")
    decisions = {d["destination_name"]: d for d in message.routing}
    assert decisions["FHIR sink"]["routed"] is True
    assert decisions["FHIR sink"]["reason"] == "no rule: always routed"
    assert decisions["ADT only"]["routed"] is False
    assert list(message.deliveries.values_list("destination__name", flat=True)) == ["FHIR sink"]


def test_the_channel_filter_drops_a_message_before_any_destination(hub, mllp_port):
    hub.route_filter = "%sendingFacility = 'ELSEWHERE'"
    hub.save()
    send(mllp_port, factories.oru_r01("DROP-1"))
    message = settled("DROP-1")
    assert message.status == Message.Status.FILTERED
    assert not message.deliveries.exists()
    [decision] = message.routing
    assert decision["reason"] == "channel filter `%sendingFacility = 'ELSEWHERE'` evaluated false"


def test_a_rule_failing_on_a_message_stops_it_at_stage_route(hub, mllp_port):
    broken = "entry.resource.ofType(Observation).status"
    Destination.objects.filter(channel=hub).update(route_when=broken)
    send(mllp_port, factories.oru_r01("BROKEN-1", n_obx=3))
    message = settled("BROKEN-1")
    assert message.status == Message.Status.ERROR
    assert message.error_stage == "route"
    assert message.error_path == "destination FHIR sink: route_when"
    assert message.error_detail.startswith(f"`{broken}`: gave 3 values")
    assert not message.deliveries.exists()
    assert message.routing[0]["routed"] is False


def test_changing_a_rule_takes_effect_for_the_next_message(hub, mllp_port):
    send(mllp_port, factories.oru_r01("BEFORE-1"))
    assert settled("BEFORE-1").status == Message.Status.PROCESSED
    Destination.objects.filter(channel=hub).update(route_when="%messageCode = 'ADT'")
    send(mllp_port, factories.oru_r01("AFTER-1"))
    assert settled("AFTER-1").status == Message.Status.FILTERED


def test_a_message_stopped_by_a_rule_is_routed_once_the_rule_is_fixed(hub, mllp_port):
    Destination.objects.filter(channel=hub).update(
        route_when="entry.resource.ofType(Observation).status"
    )
    send(mllp_port, factories.oru_r01("FIXED-1"))
    message = settled("FIXED-1")
    assert message.status == Message.Status.ERROR
    Destination.objects.filter(channel=hub).update(route_when=FINAL_REPORT)
    replay.replay([message.pk], ReplayJob.Mode.REPROCESS)
    wait_for(
        lambda: Delivery.objects.filter(message=message, status=Delivery.Status.DELIVERED).exists(),
        what="the reprocessed message delivered",
    )
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED and message.error_stage == ""
    assert message.routing[0]["reason"] == f"`{FINAL_REPORT}` evaluated true"
