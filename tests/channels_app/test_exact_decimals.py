"""A decimal keeps its written precision from the v2 message to the stored canonical JSON and
the body the destination gets: ``1.50`` stays ``1.50`` (FHIR decimals are exact)."""

from __future__ import annotations

import re

import pytest

from adapters.codecs import exact_json
from channels_app.dry_run import stored_text
from channels_app.models import Delivery, Message
from channels_app.sealing import seal_json, unseal, unseal_json
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ORU = (
    b"MSH|^~\\&|LAB|HOSP|HUB|HUB|20240102050000-0500||ORU^R01^ORU_R01|DEC-1|P|2.5.1\r"
    b"PID|1||MRN-DEC^^^HOSP^MR||DOE^JANE||19800101|F\r"
    b"OBR|1|ORD1^EHR|FIL1^LAB|24331-1^LIPID PANEL^LN|||20240102040000-0500"
    b"|||||||||||||||20240102050000-0500|||F\r"
    b"OBX|1|NM|2160-0^Creatinine^LN||1.50|mg/dL^mg/dL^UCUM|0.60-1.20|H|||F\r"
    b"OBX|2|NM|2345-7^Glucose^LN||+092.0|mg/dL^mg/dL^UCUM|70-105|N|||F\r"
)


def test_decimals_keep_their_digits_through_storage_and_delivery(hub, mllp_port, fhir_sink):
    send(mllp_port, ORU)
    wait_for(
        lambda: Delivery.objects.filter(
            message__control_id="DEC-1", status=Delivery.Status.DELIVERED
        ).first(),
        what="ORU delivered",
    )
    message = Message.objects.get(control_id="DEC-1")
    assert message.canonical_sealed is not None  # the suite seals at rest, as production must
    stored = unseal(message.canonical_sealed).decode()
    body = fhir_sink.requests[-1]["body"].decode()
    for text in (stored, body):
        values = re.findall(r'"value": ?([-0-9.]+)', text)
        assert "1.50" in values and "1.5" not in values
        assert {"0.60", "1.20"} <= set(values)  # the reference range
        assert "92.0" in values  # v2's sign and leading zeros go, the written digits stay
    [creatinine] = [
        r["resource"]
        for r in exact_json.loads(body)["entry"]
        if r["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "2160-0"
    ]
    assert str(creatinine["valueQuantity"]["value"]) == "1.50"


def test_a_sealed_bundle_keeps_its_decimals():
    bundle = {"resourceType": "Bundle", "entry": [{"value": exact_json.loads("1.50")}]}
    opened = unseal_json(seal_json(bundle))
    assert exact_json.dumps(opened) == '{"resourceType": "Bundle", "entry": [{"value": 1.50}]}'


def test_the_jsonb_column_keeps_the_digits_when_not_sealed(settings):
    settings.HUB_ENCRYPTION_KEYS = []
    bundle = {"resourceType": "Bundle", "entry": [{"value": exact_json.loads("0.10")}]}
    assert stored_text(bundle) == '{"entry": [{"value": 0.10}], "resourceType": "Bundle"}'
