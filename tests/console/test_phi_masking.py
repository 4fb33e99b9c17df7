"""PHI masking: the pure functions, then the pages (viewers masked, operators reveal, audited)."""

from __future__ import annotations

import json

import pytest

from adapters.codecs import hl7v2
from adapters.mapping.convert import convert
from channels_app.models import Delivery, Message
from console.models import AuditEvent
from console.phi import MASK, mask_fhir, mask_hl7, mask_text
from tests import factories

ORU = (
    "MSH|^~\\&|LAB|HOSP|HUB|HUB|20240102050000||ORU^R01^ORU_R01|LAB-7|P|2.5.1\r"
    "EVN|R01|20240102050000\r"
    "PID|1||MRN777^^^HOSP^MR~123-45-6789^^^SSA^SS||SMITH^ALICE^B||19751231|F|||"
    "9 ELM RD^^DAYTON^OH^45402||(937)555-0199|||M\r"
    "NK1|1|SMITH^BOB|SPO|9 ELM RD^^DAYTON^OH|(937)555-0100\r"
    "GT1|1|G55|SMITH^BOB||9 ELM RD^^DAYTON^OH|(937)555-0100|||||SE\r"
    "IN1|1|GOLD^Gold plan|ACME1|ACME INSURANCE||||GRP-42|||||||HMO|SMITH^ALICE|SEL|19751231\r"
    "OBR|1|ORD1^EHR|FIL1^LAB|24331-1^LIPID PANEL^LN|||20240102040000\r"
    "OBX|1|NM|2345-7^GLUCOSE^LN||95|mg/dL|70-105|N|||F\r"
    "OBX|2|TX|8251-1^NOTE^LN||Alice reports chest pain since Tuesday||||||F\r"
    "OBX|3|ST|8252-9^COMMENT^LN||call ALICE at home||||||F\r"
    "NTE|1|L|Patient Alice Smith fasting\r"
    "ZPI|1|ALICE SECRET\r"
)
PHI = [
    "SMITH",
    "ALICE",
    "MRN777",
    "123-45-6789",
    "19751231",
    "ELM",
    "555-01",
    "chest pain",
    "GRP-42",
]


# --- mask_hl7


def test_hl7_masks_names_ids_birth_date_address_phone_and_free_text():
    masked = mask_hl7(ORU)
    for value in PHI + ["BOB", "G55", "SECRET", "fasting"]:
        assert value not in masked, value


def test_hl7_keeps_segments_structure_and_codes():
    masked = mask_hl7(ORU)
    lines = masked.split("\r")
    assert [line[:3] for line in lines if line] == [line[:3] for line in ORU.split("\r") if line]
    assert lines[0] == ORU.split("\r")[0]  # MSH untouched
    assert lines[1] == "EVN|R01|20240102050000"
    assert "24331-1^LIPID PANEL^LN" in masked  # OBR codes
    assert "OBX|1|NM|2345-7^GLUCOSE^LN||95|mg/dL" in masked  # numeric results stay
    pid = lines[2].split("|")
    assert pid[3] == "***^^^***^***~***^^^***^***"  # repetitions and components kept
    assert pid[5] == "***^***^***" and pid[8] == "F"  # name masked, sex readable
    assert lines[3].split("|")[3] == "SPO"  # NK1 relationship readable
    assert f"OBX|2|TX|8251-1^NOTE^LN||{MASK}|" in masked
    assert f"NTE|1|L|{MASK}" in masked
    assert lines[-2] == f"ZPI|{MASK}|{MASK}"  # unknown segment: masked whole


def test_hl7_with_other_separators_and_newlines():
    text = "MSH#*~\\&#A#B#C#D#20240101##ADT*A01#1#P#2.5\nPID#1##X1##DOE*JANE\n"
    masked = mask_hl7(text)
    assert masked == f"MSH#*~\\&#A#B#C#D#20240101##ADT*A01#1#P#2.5\nPID#1##{MASK}##{MASK}*{MASK}\n"


def test_hl7_without_msh_is_masked_whole():
    assert mask_hl7("PID|1||123||DOE^JANE") == f"PID|1||{MASK}||{MASK}^{MASK}"
    assert mask_hl7("garbage with ALICE") == MASK  # not a segment: nothing is safe to show
    assert mask_hl7("XYZ|ALICE") == f"XYZ|{MASK}"
    assert mask_hl7("") == ""


# --- mask_fhir


@pytest.fixture(scope="module")
def bundle():
    return convert(hl7v2.parse(factories.adt_a01("FHIR-1", family="NGUYEN", mrn="MRN555"))).bundle


def test_fhir_masks_patient_and_keeps_the_rest(bundle):
    masked = mask_fhir(bundle)
    text = json.dumps(masked)
    for value in ["NGUYEN", "JANE", "MRN555", "1980-01-01", "MAIN ST", "SPRINGFIELD", "555-1234"]:
        assert value not in text, value
    patient = next(
        e["resource"] for e in masked["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert patient["name"][0]["family"] == MASK and patient["birthDate"] == MASK
    assert patient["gender"] == "female"
    assert all(i["value"] == MASK for i in patient["identifier"])
    urls = [e["request"]["url"] for e in masked["entry"]]
    assert any(u.startswith("Patient?identifier=") and u.endswith(MASK) for u in urls), urls
    assert masked["type"] == "transaction" and len(masked["entry"]) == len(bundle["entry"])
    assert "NGUYEN" in json.dumps(bundle)  # masking works on a copy


def test_fhir_masks_related_person_observation_text_notes_and_documents():
    data = {
        "resourceType": "Bundle",
        "entry": [
            {
                "fullUrl": "urn:uuid:p1",
                "resource": {"resourceType": "RelatedPerson", "name": [{"family": "ROE"}]},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "code": {"coding": [{"code": "8251-1"}]},
                    "valueString": "feels ROE is lying",
                    "note": [{"text": "called ROE"}],
                    "performer": [{"reference": "urn:uuid:p1", "display": "ROE"}],
                }
            },
            {
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "content": [{"attachment": {"contentType": "text/plain", "data": "Uk9F"}}],
                }
            },
        ],
    }
    masked = mask_fhir(data)
    assert "ROE" not in json.dumps(masked) and "Uk9F" not in json.dumps(masked)
    obs = masked["entry"][1]["resource"]
    assert obs["code"]["coding"][0]["code"] == "8251-1" and obs["valueString"] == MASK
    assert obs["performer"][0]["reference"] == "urn:uuid:p1"
    assert masked["entry"][2]["resource"]["content"][0]["attachment"]["contentType"] == MASK


def test_practitioner_names_stay_readable(bundle):
    text = json.dumps(mask_fhir(bundle))
    assert "WELBY" in text


# --- mask_text


def test_text_masks_quoted_values_and_hl7_fragments_but_keeps_the_reason():
    assert mask_text("PID-7 '19800132' -> Patient.birthDate: not a date (sender)") == (
        f"PID-7 '{MASK}' -> Patient.birthDate: not a date (sender)"
    )
    assert mask_text('text "ALICE|x" precedes MSH') == f'text "{MASK}" precedes MSH'
    assert mask_text("the sender's MSH-2 is odd") == "the sender's MSH-2 is odd"
    assert "ALICE" not in mask_text("bad segment PID|1||ALICE^SMITH")
    assert mask_text("") == ""


# --- pages


@pytest.fixture
def message(db):
    channel = factories.channel(40201)
    destination = factories.fhir_destination(channel, "http://fhir.example/fhir")
    m = Message.objects.create(
        channel=channel,
        raw=ORU.encode(),
        message_type="ORU^R01",
        control_id="LAB-7",
        status=Message.Status.PROCESSED,
        canonical=convert(hl7v2.parse(factories.adt_a01("X", family="SMITH", mrn="MRN777"))).bundle,
        issues=[
            {
                "segment": "PID",
                "field": "PID-7",
                "value": "19751231",
                "target": "Patient.birthDate",
                "reason": "date '19751231' has no zone",
                "origin": "sender",
            }
        ],
    )
    Delivery.objects.create(
        message=m, destination=destination, last_error="HTTP 422: name 'SMITH' is invalid"
    )
    return m


@pytest.fixture
def bad_message(db):
    return Message.objects.create(
        channel=factories.channel(40202),
        raw=b"junk ALICE MSH|^~\\&|A",
        status=Message.Status.ERROR,
        error_stage="parse",
        error_class="HL7Error",
        error_path="MSH",
        error_detail="text 'junk ALICE ' precedes MSH (a framing marker); strip it (MSH, segment #1)",
    )


def page(client, user, url, **kwargs):
    client.force_login(user)
    response = client.get(url, **kwargs)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_viewer_sees_metadata_but_no_phi(client, viewer_user, message):
    html = page(client, viewer_user, f"/messages/{message.pk}/")
    for value in PHI + ["19751231"]:
        assert value not in html, value
    assert "LAB-7" in html and "ORU^R01" in html and "24331-1^LIPID PANEL^LN" in html
    assert "your role does not include viewing PHI" in html and "Reveal PHI" not in html
    assert "has no zone" in html and "HTTP 422" in html


@pytest.mark.django_db
def test_viewer_error_detail_keeps_class_stage_path(client, viewer_user, bad_message):
    html = page(client, viewer_user, f"/messages/{bad_message.pk}/")
    assert "ALICE" not in html
    assert "Stopped at the parse stage: HL7Error" in html and "precedes MSH" in html
    assert "<code>MSH</code>" in html
    listing = page(client, viewer_user, "/messages/")
    assert "ALICE" not in listing and "precedes MSH" in listing


@pytest.mark.django_db
def test_operator_sees_masked_until_reveal_and_the_reveal_is_audited(
    client, operator_user, message
):
    html = page(client, operator_user, f"/messages/{message.pk}/")
    assert "SMITH" not in html and "Reveal PHI" in html
    assert not AuditEvent.objects.filter(action="phi.reveal").exists()
    response = client.post(f"/messages/{message.pk}/reveal/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    fragment = response.content.decode()
    assert "<html" not in fragment and 'id="phi"' in fragment
    assert "SMITH^ALICE^B" in fragment and "chest pain" in fragment and "MRN777" in fragment
    assert "name &#x27;SMITH&#x27; is invalid" in fragment
    event = AuditEvent.objects.get(action="phi.reveal")
    assert event.target == f"message:{message.pk}" and event.actor == operator_user
    # Revealing does not stick: the next visit is masked again.
    assert "SMITH" not in client.get(f"/messages/{message.pk}/").content.decode()


@pytest.mark.django_db
def test_reveal_without_htmx_renders_the_whole_page(client, analyst_user, message):
    client.force_login(analyst_user)
    html = client.post(f"/messages/{message.pk}/reveal/").content.decode()
    assert "<html" in html and "SMITH^ALICE^B" in html and "Mask again" in html


@pytest.mark.django_db
def test_reveal_needs_post_and_an_existing_message(client, operator_user):
    client.force_login(operator_user)
    assert client.get("/messages/1/reveal/").status_code == 405
    assert client.post("/messages/999999/reveal/").status_code == 404
    assert not AuditEvent.objects.filter(action="phi.reveal").exists()
