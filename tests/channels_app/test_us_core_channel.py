"""A channel that asks for US Core (source option ``profile: us-core``) delivers Patients with
US Core's race and ethnicity extensions; the same message on a plain channel does not."""

from __future__ import annotations

import pytest

from channels_app.models import Delivery
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


ADT_WITH_RACE = (
    b"MSH|^~\\&|REG|HOSP|HUB|HUB|20240102050000-0500||ADT^A04^ADT_A01|RACE-1|P|2.5.1\r"
    b"PID|1||MRN-RACE^^^HOSP^MR||DOE^JANE||19800101|F||2054-5^Black or African American^CDCREC"
    b"||||||||||||2186-5^Not Hispanic or Latino^CDCREC\r"
)


def test_a_us_core_channel_delivers_race_and_ethnicity(hub, mllp_port, fhir_sink):
    hub.source_config = {**hub.source_config, "profile": "us-core"}
    hub.save(update_fields=["source_config"])
    send(mllp_port, ADT_WITH_RACE)
    wait_for(
        lambda: Delivery.objects.filter(
            message__control_id="RACE-1", status=Delivery.Status.DELIVERED
        ).first(),
        what="ADT delivered",
    )
    [bundle] = fhir_sink.bundles()
    [patient] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    urls = [e["url"] for e in patient["extension"]]
    assert "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race" in urls
    assert "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity" in urls
