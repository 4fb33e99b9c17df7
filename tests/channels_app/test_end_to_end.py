"""ADT and ORU from an MLLP socket to a FHIR server, through a real Celery worker."""

from __future__ import annotations

import pytest

from channels_app.models import Attempt, Delivery, Message
from tests import factories
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def delivered(control_id: str):
    return Delivery.objects.filter(
        message__control_id=control_id, status=Delivery.Status.DELIVERED
    ).first()


def test_adt_a01_becomes_a_transaction_bundle_at_the_fhir_server(hub, mllp_port, fhir_sink):
    send(mllp_port, factories.adt_a01("ADT-1", family="O'HARA", mrn="M-77"))
    delivery = wait_for(lambda: delivered("ADT-1"), what="ADT delivered")
    [bundle] = fhir_sink.bundles()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert bundle["identifier"]["value"] == "ADT-1"  # MSH-10, as the IG maps MSH
    assert bundle["timestamp"].startswith("2024-01-02T03:04:05")  # MSH-7
    [patient] = resources(bundle, "Patient")
    assert patient["name"][0]["family"] == "O'HARA"
    assert any(i["value"] == "M-77" for i in patient["identifier"])
    assert resources(bundle, "Encounter")
    message = delivery.message
    assert message.status == Message.Status.PROCESSED and message.canonical_json == bundle
    [attempt] = Attempt.objects.filter(delivery=delivery)
    assert attempt.outcome == Attempt.Outcome.SUCCESS and attempt.status_code == 200
    assert fhir_sink.requests[0]["key"] == delivery.idempotency_key


def test_oru_r01_carries_report_and_one_observation_per_obx(hub, mllp_port, fhir_sink):
    send(mllp_port, factories.oru_r01("ORU-1", n_obx=4))
    wait_for(lambda: delivered("ORU-1"), what="ORU delivered")
    [bundle] = fhir_sink.bundles()
    assert bundle["identifier"]["value"] == "ORU-1"
    assert len(resources(bundle, "DiagnosticReport")) == 1
    observations = resources(bundle, "Observation")
    assert len(observations) == 4
    assert sorted(o["valueQuantity"]["value"] for o in observations) == [91, 92, 93, 94]


def test_unmappable_message_stops_with_its_stage_and_reason(hub, mllp_port):
    raw = b"MSH|^~\\&|A|B|C|D|20240101||ZZZ^Z01|ODD-1|P|2.5.1\rZZZ|1\r"
    send(mllp_port, raw)
    message = wait_for(
        lambda: Message.objects.filter(control_id="ODD-1", status=Message.Status.ERROR).first(),
        what="message in ERROR",
    )
    assert message.error_stage == "map" and "ZZZ" in message.error_detail
    assert not message.deliveries.exists()
