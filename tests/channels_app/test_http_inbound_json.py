"""Custom JSON over HTTP, end to end: a sender posts its own JSON with a service token to a channel
configured with a json_map; a real worker maps it to FHIR R4 and delivers it to the FHIR sink.
Bad bodies are refused with the reason and kept; a broken map is the channel's fault."""

from __future__ import annotations

import json

import pytest

from adapters.codecs import custom_json
from channels_app.models import Channel, Message
from channels_app.sealing import unseal
from tests import factories
from tests.support import inbound_client, is_delivered, post_inbound, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

JSON = "application/json"
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.7"

JSON_MAP = {
    "resources": ["Patient", {"type": "Encounter", "when": "%input.visit.exists()"}],
    "key": "%input.orderId",
    "rules": [
        {
            "name": "mrn",
            "source": "%input.patient.mrn",
            "target": "Patient.identifier[0].value",
            "required": True,
        },
        {
            "target": "Patient.identifier[0].system",
            "transforms": [{"op": "default", "value": MRN_SYSTEM}],
        },
        {"source": "%input.patient.last", "target": "Patient.name[0].family"},
        {"source": "%input.patient.first", "target": "Patient.name[0].given"},
        {
            "name": "dob",
            "source": "%input.patient.dob",
            "target": "Patient.birthDate",
            "transforms": [{"op": "date", "from": "%Y%m%d", "to": "fhir"}],
        },
        {"source": "%input.visit.id", "target": "Encounter.identifier[0].value"},
        {"source": "%input.visit.class", "target": "Encounter.class.code"},
        {
            "target": "Encounter.status",
            "transforms": [{"op": "default", "value": "in-progress"}],
        },
        {"source": "%fullUrl_Patient", "target": "Encounter.subject.reference"},
    ],
}


def order(order_id: str, **patient) -> dict:
    return {
        "orderId": order_id,
        "patient": {"mrn": "M-5150", "last": "Lindqvist", "first": ["Sofia"], **patient},
        "visit": {"id": "V-88", "class": "AMB"},
    }


@pytest.fixture
def json_hub(http_server, celery_worker, fhir_sink):
    channel = factories.channel(
        0,
        source_type=Channel.SourceType.HTTP,
        source_config={"inbound": "json", "json_map": JSON_MAP},
    )
    factories.fhir_destination(channel, fhir_sink.url)
    with inbound_client(http_server, "lis") as client:
        yield channel, client


def settled(message_id: int) -> Message | None:
    message = Message.objects.get(pk=message_id)
    return None if message.status == Message.Status.RECEIVED else message


def test_custom_json_is_mapped_and_delivered_as_a_fhir_transaction(json_hub, fhir_sink):
    channel, client = json_hub
    # As a sender writes it: its own spacing and key order, which the hub keeps byte for byte.
    body = json.dumps(order("ORD-1", dob="19840312"), indent=3).encode()
    response = post_inbound(client, channel, body, JSON, **{"Idempotency-Key": "ord-1"})
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    assert response.headers["Location"] == f"/api/v1/messages/{message_id}/"
    message = Message.objects.get(pk=message_id)  # committed before the 202
    assert unseal(message.raw) == body
    assert message.content_type == custom_json.MEDIA_TYPE and message.control_id == "ord-1"

    wait_for(lambda: is_delivered(message_id), what="custom JSON delivered")
    [bundle] = fhir_sink.bundles()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    assert set(by_type) == {"Patient", "Encounter"}
    patient = by_type["Patient"]["resource"]
    assert patient["identifier"] == [{"value": "M-5150", "system": MRN_SYSTEM}]
    assert patient["name"] == [{"family": "Lindqvist", "given": ["Sofia"]}]
    assert patient["birthDate"] == "1984-03-12"
    assert by_type["Patient"]["request"] == {
        "method": "PUT",
        "url": f"Patient?identifier={MRN_SYSTEM}|M-5150",
    }
    encounter = by_type["Encounter"]["resource"]
    assert encounter["subject"] == {"reference": by_type["Patient"]["fullUrl"]}
    assert Message.objects.get(pk=message_id).issues == []


def test_a_repeat_with_the_same_idempotency_key_is_a_duplicate(json_hub):
    channel, client = json_hub
    body = json.dumps(order("ORD-2")).encode()
    first = post_inbound(client, channel, body, JSON, **{"Idempotency-Key": "ord-2"})
    again = post_inbound(client, channel, body, JSON, **{"Idempotency-Key": "ord-2"})
    assert first.status_code == 202, first.text
    assert again.status_code == 200
    assert again.json() == {"message_id": None, "status": "DUPLICATE", "duplicate": True}
    assert Message.objects.filter(channel=channel, control_id="ord-2").count() == 1


def test_a_body_that_is_not_json_is_refused_with_its_reason_and_kept(json_hub):
    channel, client = json_hub
    response = post_inbound(
        client, channel, b'{"orderId": "ORD-3", "patient": ', JSON, **{"Idempotency-Key": "x"}
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("parse error at line 1 column") and "not JSON" in detail
    kept = Message.objects.get(pk=response.json()["message_id"])
    assert kept.status == Message.Status.ERROR and kept.error_stage == "parse"
    assert kept.error_class == "NotJson" and kept.error_path.startswith("line 1 column")
    assert unseal(kept.raw) == b'{"orderId": "ORD-3", "patient": '
    assert not kept.deliveries.exists()


def test_the_channel_decides_the_format_not_the_body(json_hub):
    channel, client = json_hub
    fhir = {"resourceType": "Patient", "name": [{"family": "X"}]}
    refused = post_inbound(client, channel, json.dumps(fhir).encode(), "application/fhir+json")
    assert refused.status_code == 415 and JSON in refused.json()["detail"]
    hl7 = post_inbound(client, channel, factories.adt_a01("J-1"), "x-application/hl7-v2+er7")
    assert hl7.status_code == 415
    assert not Message.objects.filter(channel=channel).exists()


def test_a_document_without_a_required_value_stops_in_the_map_stage(json_hub, fhir_sink):
    channel, client = json_hub
    document = order("ORD-4", dob="1984-03-12")  # not the %Y%m%d the map reads: an issue only
    del document["patient"]["mrn"]
    response = post_inbound(client, channel, json.dumps(document).encode(), JSON)
    assert response.status_code == 202, response.text
    message = wait_for(lambda: settled(response.json()["message_id"]), what="message processed")
    assert message.status == Message.Status.ERROR and message.error_stage == "map"
    assert message.error_class == "MapFailed"
    assert message.error_path == "Patient.identifier[0].value"
    assert "rule #1 ('mrn')" in message.error_detail
    assert "%input.patient.mrn" in message.error_detail
    assert {i["target"] for i in message.issues} == {
        "Patient.identifier[0].value",
        "Patient.birthDate",
    }
    assert not message.deliveries.exists() and fhir_sink.bundles() == []


def test_an_invalid_bundle_stops_in_the_validate_stage_naming_the_path(json_hub):
    channel, client = json_hub
    document = order("ORD-5")
    del document["visit"]["class"]  # Encounter.class is required in R4
    response = post_inbound(client, channel, json.dumps(document).encode(), JSON)
    assert response.status_code == 202, response.text
    message = wait_for(lambda: settled(response.json()["message_id"]), what="message processed")
    assert message.status == Message.Status.ERROR and message.error_stage == "validate"
    assert message.error_path == "Encounter.class"
    assert "'class' is required in Encounter" in message.error_detail


def test_a_channel_whose_map_does_not_compile_refuses_and_stores_nothing(json_hub):
    channel, client = json_hub
    broken = json.loads(json.dumps(JSON_MAP))
    broken["rules"][4]["transforms"] = [{"op": "date", "from": "%Y%m%d"}]
    # Saved past the API (which refuses it), as a database edit or an old import would.
    Channel.objects.filter(pk=channel.pk).update(
        source_config={"inbound": "json", "json_map": broken}
    )
    response = post_inbound(client, channel, json.dumps(order("ORD-6")).encode(), JSON)
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "json_map.rules[4].transforms[0]" in detail and "rule #5 ('dob')" in detail
    assert not Message.objects.filter(channel=channel).exists()
