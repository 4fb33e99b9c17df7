"""Messages that came as FHIR or as custom JSON are found by the same keys as HL7 v2 ones (MRN,
name, birth date, order and visit numbers), read once at processing from the canonical Bundle."""

from __future__ import annotations

import json

import pytest

from adapters.codecs import custom_json, fhir_json
from channels_app.models import Channel, Message, MessageKey
from channels_app.pipeline.process import process_messages
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

FHIR_BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:3c1e8f4e-1f0e-4bb5-9b7e-2c6d1f1a0001",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:id:CITYHOSP", "value": "FH-5150"}],
                "name": [{"family": "Ødegård", "given": ["Ingrid"]}],
                "birthDate": "1969-07-20",
            },
            "request": {"method": "PUT", "url": "Patient?identifier=urn:id:CITYHOSP|FH-5150"},
        },
        {
            "fullUrl": "urn:uuid:3c1e8f4e-1f0e-4bb5-9b7e-2c6d1f1a0002",
            "resource": {
                "resourceType": "ServiceRequest",
                "status": "active",
                "intent": "order",
                "identifier": [{"value": "SR-880"}],
                "subject": {"reference": "urn:uuid:3c1e8f4e-1f0e-4bb5-9b7e-2c6d1f1a0001"},
            },
            "request": {"method": "POST", "url": "ServiceRequest"},
        },
        {
            "fullUrl": "urn:uuid:3c1e8f4e-1f0e-4bb5-9b7e-2c6d1f1a0003",
            "resource": {
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {"code": "IMP"},
                "identifier": [{"value": "ENC-42"}],
            },
            "request": {"method": "POST", "url": "Encounter"},
        },
    ],
}

JSON_MAP = {
    "resources": ["Patient"],
    "rules": [
        {"name": "mrn", "source": "%input.mrn", "target": "Patient.identifier[0].value"},
        {"name": "family", "source": "%input.last", "target": "Patient.name[0].family"},
        {"name": "given", "source": "%input.first", "target": "Patient.name[0].given[0]"},
        {"name": "born", "source": "%input.born", "target": "Patient.birthDate"},
    ],
}


def processed(channel, document: dict, content_type: str, control_id: str = "") -> Message:
    raw = json.dumps(document).encode()
    message = Message.objects.create(
        channel=channel, raw=raw, size=len(raw), content_type=content_type, control_id=control_id
    )
    process_messages([message.pk])
    message.refresh_from_db()
    assert message.status != Message.Status.ERROR, message.error_detail
    return message


@pytest.fixture
def traffic():
    fhir_channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    json_channel = factories.channel(
        0,
        name="Clinic JSON",
        source_type=Channel.SourceType.HTTP,
        source_config={"inbound": "json", "json_map": JSON_MAP},
    )
    document = {"mrn": "JS-7001", "last": "Abernathy", "first": "Theo", "born": "2001-03-04"}
    return {
        "fhir": processed(fhir_channel, FHIR_BUNDLE, fhir_json.MEDIA_TYPE, "bundle-17"),
        "json": processed(json_channel, document, custom_json.MEDIA_TYPE),
    }


SEARCHES = [
    ("FH-5150", ["fhir"]),  # a patient identifier
    ("ØDEGA", ["fhir"]),  # a name's beginning, any case, accents aside (å)
    ("ingrid", ["fhir"]),
    ("19690720", ["fhir"]),  # birth date, stored as v2 writes it
    ("1969-07-20", ["fhir"]),  # and typed as FHIR writes it
    ("SR-880", ["fhir"]),  # an order (ServiceRequest identifier)
    ("ENC-42", ["fhir"]),  # a visit (Encounter identifier)
    ("bundle-17", ["fhir"]),  # the control id it came with
    ("JS-7001", ["json"]),  # custom JSON: the keys of the Bundle its map made
    ("aber theo", ["json"]),
    ("20010304", ["json"]),
]


@pytest.mark.parametrize(("q", "expected"), SEARCHES)
def test_fhir_and_json_messages_are_found_by_their_keys(viewer_user, traffic, q, expected):
    response = signed_in(viewer_user).get("/api/v1/messages/", {"q": q})
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["results"]] == [traffic[n].pk for n in expected]


def test_keys_are_stored_with_their_authority(traffic):
    mrn = MessageKey.objects.get(message=traffic["fhir"], kind="identifier")
    assert (mrn.value, mrn.authority) == ("FH-5150", "CITYHOSP")
    kinds = set(MessageKey.objects.filter(message=traffic["json"]).values_list("kind", flat=True))
    assert kinds == {"identifier", "family", "given", "birth_date"}


def test_keys_of_a_batch_are_saved_in_one_statement(django_assert_max_num_queries):
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    raw = json.dumps(FHIR_BUNDLE).encode()
    ids = [
        Message.objects.create(
            channel=channel, raw=raw, size=len(raw), content_type=fhir_json.MEDIA_TYPE
        ).pk
        for _ in range(3)
    ]
    with django_assert_max_num_queries(12) as counted:
        process_messages(ids)
    key_writes = [q for q in counted.captured_queries if "channels_app_messagekey" in q["sql"]]
    assert len(key_writes) == 1
    assert MessageKey.objects.filter(message_id__in=ids, value="FH-5150").count() == 3
