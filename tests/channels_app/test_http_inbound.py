"""HTTP inbound over a real HTTP server: HL7 v2 and FHIR JSON posted with a service token reach
the FHIR sink through a real worker; bad input is refused with its reason and still stored."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from channels_app.models import Channel, Message
from console import tokens
from console.roles import Role
from tests import factories
from tests.support import inbound_client, is_delivered, post_inbound, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

HL7 = "x-application/hl7-v2+er7"
FHIR = "application/fhir+json"


@pytest.fixture
def http_hub(http_server, celery_worker, fhir_sink):
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    factories.fhir_destination(channel, fhir_sink.url)
    with inbound_client(http_server, "ris") as client:
        yield channel, client


def test_hl7_v2_is_accepted_after_commit_and_delivered(http_hub, fhir_sink):
    channel, client = http_hub
    response = post_inbound(client, channel, factories.adt_a01("HTTP-1", family="KOWALSKI"), HL7)
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    assert response.headers["Location"] == f"/api/v1/messages/{message_id}/"
    assert Message.objects.get(pk=message_id).control_id == "HTTP-1"  # committed before the 202
    wait_for(lambda: is_delivered(message_id), what="HL7 over HTTP delivered")
    [bundle] = fhir_sink.bundles()
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert patient["name"][0]["family"] == "KOWALSKI"


def test_a_repeat_is_answered_as_a_duplicate_and_stored_once(http_hub):
    channel, client = http_hub
    first = post_inbound(client, channel, factories.adt_a01("HTTP-DUP"), HL7)
    again = post_inbound(client, channel, factories.adt_a01("HTTP-DUP"), HL7)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == {"message_id": None, "status": "DUPLICATE", "duplicate": True}
    assert Message.objects.filter(control_id="HTTP-DUP").count() == 1


def test_a_fhir_resource_becomes_a_transaction_bundle(http_hub, fhir_sink):
    channel, client = http_hub
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "H-9"}],
        "name": [{"family": "NAKAMURA", "given": ["AI"]}],
        "birthDate": "1990-04-01",
    }
    response = post_inbound(
        client, channel, json.dumps(patient).encode(), FHIR, **{"Idempotency-Key": "k-1"}
    )
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    wait_for(lambda: is_delivered(message_id), what="FHIR over HTTP delivered")
    [bundle] = fhir_sink.bundles()
    assert bundle["type"] == "transaction"
    assert bundle["entry"][0]["resource"]["name"][0]["family"] == "NAKAMURA"
    message = Message.objects.get(pk=message_id)
    assert message.content_type == FHIR and message.control_id == "k-1"
    assert post_inbound(
        client, channel, json.dumps(patient).encode(), FHIR, **{"Idempotency-Key": "k-1"}
    ).json()["duplicate"]


def test_bad_input_is_refused_with_its_reason_and_kept(http_hub):
    channel, client = http_hub
    invalid = {"resourceType": "Patient", "birthDate": "not a date"}
    response = post_inbound(client, channel, json.dumps(invalid).encode(), FHIR)
    assert response.status_code == 422
    assert "birthDate" in response.json()["detail"]
    kept = Message.objects.get(pk=response.json()["message_id"])
    assert kept.status == Message.Status.ERROR and kept.error_stage == "validate"

    response = post_inbound(client, channel, b"this is not HL7", HL7)
    assert response.status_code == 400 and "parse error" in response.json()["detail"]
    assert Message.objects.get(pk=response.json()["message_id"]).status == Message.Status.ERROR

    assert post_inbound(client, channel, b'{"order": 1}', "application/json").status_code == 415
    assert post_inbound(client, channel, b"<xml/>", "application/xml").status_code == 415
    assert post_inbound(client, channel, b"", HL7).status_code == 400
    channel.max_message_bytes = 100
    channel.save()
    assert post_inbound(client, channel, factories.oru_r01("BIG", n_obx=20), HL7).status_code == 413


def test_only_http_channels_accept_and_only_with_a_token_of_operator_role(http_hub, http_server):
    channel, client = http_hub
    mllp_channel = factories.channel(40301)
    assert post_inbound(client, mllp_channel, factories.adt_a01("X"), HL7).status_code == 409
    anonymous = httpx.post(
        f"{http_server}/api/v1/channels/{channel.pk}/messages/",
        content=factories.adt_a01("ANON"),
        headers={"Content-Type": HL7},
    )
    assert anonymous.status_code == 401
    viewer = tokens.issue(tokens.service_account("peek"), Role.VIEWER, lifetime=timedelta(days=1))
    refused = httpx.post(
        f"{http_server}/api/v1/channels/{channel.pk}/messages/",
        content=factories.adt_a01("VIEW"),
        headers={"Content-Type": HL7, "Authorization": f"Bearer {viewer.secret}"},
    )
    assert refused.status_code == 403
    assert not Message.objects.filter(control_id__in=["ANON", "VIEW"]).exists()
