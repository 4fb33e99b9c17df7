"""ORM/OML -> ServiceRequest, SIU -> Appointment, VXU -> Immunization, MDM -> DocumentReference,
DFT -> ChargeItem, RDE -> MedicationRequest."""

from __future__ import annotations

import base64

import pytest

from adapters.mapping import MappingError, convert

from .conftest import PID, PV1, entry_of, message, one, resources, seg


def msh(kind: str) -> str:
    return f"MSH|^~\\&|APP|FAC^1.2.3^ISO|EHR|HUB|20240301101500+0100||{kind}|C-{kind}|P|2.5.1"


@pytest.mark.parametrize(
    ("orc1", "orc5", "status"),
    [("NW", "", "active"), ("CA", "", "revoked"), ("SC", "CM", "completed"), ("HD", "", "on-hold")],
)
def test_orm_service_request_status_from_orc(orc1, orc5, status):
    orc = seg("ORC", {1: orc1, 2: "PL-1^EHR", 5: orc5})
    obr = "OBR|1|PL-1^EHR||70553^MRI brain^C4"
    request = one(convert(message(msh("ORM^O01"), PID, PV1, orc, obr)), "ServiceRequest")
    assert request["status"] == status
    assert request["intent"] == "order"


def test_oml_order_with_specimen_observation_note_and_diagnosis():
    segments = [
        msh("OML^O21"),
        PID,
        "ORC|NW|PL-7^EHR|||||||20240301100000+0100|||1234^Order^Olivia",
        "TQ1|||||||20240302080000+0100||S",
        "OBR|1|PL-7^EHR||1558-6^Fasting glucose^LN",
        "NTE|1||Patient fasting since midnight",
        "DG1|1||E11.9^Type 2 diabetes^I10",
        "OBX|1|NM|1234-5^Hours fasting^LN||12|h|||||F",
        "SPM|1|SP-1^EHR||119297000^Blood^SCT|||||||||||||20240302081500+0100",
    ]
    result = convert(message(*segments))
    request = one(result, "ServiceRequest")
    assert request["code"]["coding"][0]["code"] == "1558-6"
    assert request["priority"] == "stat"
    assert request["occurrenceDateTime"] == "2024-03-02T08:00:00+01:00"
    assert request["authoredOn"] == "2024-03-01T10:00:00+01:00"
    assert request["requester"]["display"] == "Olivia Order"
    assert request["note"] == [{"text": "Patient fasting since midnight"}]
    assert (
        request["specimen"][0]["reference"] == entry_of(result, one(result, "Specimen"))["fullUrl"]
    )
    assert (
        request["supportingInfo"][0]["reference"]
        == entry_of(result, one(result, "Observation"))["fullUrl"]
    )
    assert (
        request["reasonReference"][0]["reference"]
        == entry_of(result, one(result, "Condition"))["fullUrl"]
    )
    specimen = one(result, "Specimen")
    assert specimen["collection"]["collectedDateTime"] == "2024-03-02T08:15:00+01:00"
    assert request["identifier"][0]["system"] == "urn:id:EHR"


def test_order_number_without_namespace_is_scoped_to_the_sender():
    result = convert(message(msh("ORM^O01"), PID, "ORC|NW|801887.001", "OBR|1|801887.001||MRS^MRI"))
    request = one(result, "ServiceRequest")
    assert request["identifier"][0] == {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]
        },
        "system": "urn:oid:1.2.3",
        "value": "801887.001",
    }


def test_order_message_without_order_is_a_mapping_error():
    with pytest.raises(MappingError) as err:
        convert(message(msh("ORM^O01"), PID))
    assert err.value.segment == "ORC"


SCH = seg(
    "SCH",
    {
        1: "12345^EHR",
        2: "36996^SCHED",
        7: "CHK^Checkup^HL70276",
        8: "ROUTINE^Routine^HL70277",
        9: "60",
        10: "min",
        11: "^^60^202403051000+0100^202403051100+0100",
        25: "Booked",
    },
)


def test_siu_becomes_an_appointment_with_participants():
    result = convert(
        message(
            msh("SIU^S12"),
            SCH,
            "NTE|1||Bring previous results",
            PID,
            "RGS|1",
            "AIS|1|A|99213^Office visit^C4|202403051000+0100|||60|min",
            "AIL|1||CLINIC^R1^^FAC|C^Clinic^HL70305",
            "AIP|1||1210^Gastro^Greta|GI^Gastroenterologist^L",
        )
    )
    appointment = one(result, "Appointment")
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2024-03-05T10:00:00+01:00"
    assert appointment["end"] == "2024-03-05T11:00:00+01:00"
    assert appointment["minutesDuration"] == 60
    assert appointment["serviceType"][0]["coding"][0]["code"] == "99213"
    assert appointment["comment"] == "Bring previous results"
    actors = [p["actor"].get("reference") for p in appointment["participant"]]
    assert entry_of(result, one(result, "Patient"))["fullUrl"] in actors
    assert entry_of(result, one(result, "Practitioner"))["fullUrl"] in actors
    clinic = next(p for p in resources(result, "Location") if p["name"] == "CLINIC")
    assert entry_of(result, clinic)["fullUrl"] in actors
    assert entry_of(result, appointment)["request"]["url"].startswith("Appointment?identifier=")


def test_siu_cancellation_event_cancels():
    appointment = one(convert(message(msh("SIU^S15"), SCH, PID)), "Appointment")
    assert appointment["status"] == "cancelled"


def test_siu_start_without_end_or_duration_is_a_requested_period():
    sch = seg("SCH", {1: "1^EHR", 2: "2^SCHED", 11: "^^^202403051000+0100"})
    appointment = one(convert(message(msh("SIU^S12"), sch, PID)), "Appointment")
    assert "start" not in appointment and "end" not in appointment
    assert appointment["requestedPeriod"] == [{"start": "2024-03-05T10:00:00+01:00"}]


def test_vxu_immunization_with_route_lot_manufacturer_and_funding():
    rxa = "RXA|0|1|20120814||140^Influenza^CVX|0.5|mL^mL^UCUM||00^New record^NIP001|57422^Radon^Nick|||||W1356FE|20121214|SKB^GlaxoSmithKline^MVX|||CP|A"
    result = convert(
        message(
            msh("VXU^V04"),
            PID,
            "ORC|RE||IZ-1^NDA",
            rxa,
            "RXR|C28161^Intramuscular^NCIT|RA^Right Arm^HL70163",
            "OBX|1|CE|64994-7^Eligibility^LN|1|V03^VFC eligible^HL70064||||||F",
            "OBX|2|CE|69764-9^VIS type^LN|2|253088698300012711120420^Influenza VIS^cdcgs1vis||||||F",
            "OBX|3|TS|29769-7^VIS presented^LN|2|20120814||||||F",
        )
    )
    imm = one(result, "Immunization")
    assert imm["status"] == "completed"
    assert imm["vaccineCode"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/cvx",
        "code": "140",
        "display": "Influenza",
    }
    assert imm["occurrenceDateTime"] == "2012-08-14"
    assert imm["primarySource"] is True
    assert imm["lotNumber"] == "W1356FE" and imm["expirationDate"] == "2012-12-14"
    assert imm["manufacturer"] == {
        "identifier": {"system": "http://terminology.hl7.org/CodeSystem/MVX", "value": "SKB"},
        "display": "GlaxoSmithKline",
    }
    assert imm["doseQuantity"]["value"] == 0.5
    assert imm["route"]["coding"][0]["code"] == "C28161"
    assert imm["programEligibility"][0]["coding"][0]["code"] == "V03"
    assert imm["education"] == [{"documentType": "Influenza VIS", "presentationDate": "2012-08-14"}]
    assert imm["performer"][0]["function"]["coding"][0]["code"] == "AP"
    # the OBX the Immunization reads are Observations too, part of it (IG: VXU OBX)
    observations = resources(result, "Observation")
    assert observations and all("partOf" in o for o in observations)


def test_vxu_refusal_is_not_done():
    rxa = seg(
        "RXA",
        {
            1: "0",
            2: "1",
            3: "20120814",
            5: "140^Influenza^CVX",
            6: "999",
            18: "00^Parental decision^NIP002",
            20: "RE",
        },
    )
    imm = one(convert(message(msh("VXU^V04"), PID, rxa)), "Immunization")
    assert imm["status"] == "not-done"
    assert imm["statusReason"]["coding"][0]["code"] == "00"
    assert "doseQuantity" not in imm


def test_mdm_document_with_text_and_pdf():
    pdf = base64.b64encode(b"%PDF-1.4").decode()
    txa = seg(
        "TXA",
        {
            1: "1",
            2: "DS^Discharge summary^HL70270",
            3: "TX",
            4: "20240301120000+0100",
            5: "1780^Johnson^Val",
            12: "DOC-1^EHR",
            17: "AU",
            19: "AV",
        },
    )
    result = convert(
        message(
            msh("MDM^T02"),
            PID,
            PV1,
            txa,
            "OBX|1|TX|11490-0^Discharge note^LN||Line one~Line two||||||F",
            f"OBX|2|ED|11490-0^PDF^LN||EHR^AP^PDF^Base64^{pdf}||||||F",
        )
    )
    doc = one(result, "DocumentReference")
    assert doc["status"] == "current" and doc["docStatus"] == "final"
    assert doc["masterIdentifier"]["value"] == "DOC-1"
    assert doc["date"] == "2024-03-01T12:00:00+01:00"
    text, pdf_content = doc["content"]
    assert base64.b64decode(text["attachment"]["data"]).decode() == "Line one\nLine two"
    assert pdf_content["attachment"] == {"contentType": "application/pdf", "data": pdf}
    assert doc["author"][0]["display"] == "Val Johnson"
    assert (
        doc["context"]["encounter"][0]["reference"]
        == entry_of(result, one(result, "Encounter"))["fullUrl"]
    )


def test_dft_charge_item_per_ft1():
    ft1 = "FT1|1|T-1||20191122|20191122|CG|71045^Xray chest^C4|||2|100&USD|||||||||9941339108^Smith^Adam"
    pid = PID + "||ACC-1^^^HOSP&1.2.3.4.5&ISO^AN"  # PID-18
    result = convert(message(msh("DFT^P03"), pid, PV1, ft1, ft1.replace("T-1", "T-2")))
    charges = resources(result, "ChargeItem")
    assert len(charges) == 2
    charge = charges[0]
    assert charge["status"] == "billable"
    assert charge["code"]["coding"][0]["code"] == "71045"
    assert charge["quantity"] == {"value": 2}
    assert charge["priceOverride"] == {"value": 100, "currency": "USD"}
    assert charge["occurrenceDateTime"] == "2019-11-22"
    assert charge["account"][0]["reference"] == entry_of(result, one(result, "Account"))["fullUrl"]
    assert charge["identifier"][0]["value"] == "T-1"


def test_rde_medication_request():
    segments = [
        msh("RDE^O11"),
        PID,
        "ORC|NW|RX-1^EHR|||||||20240301100000+0100|||1234^Doc^Dora",
        "RXE||00047040230^Ampicillin 250 mg^NDC|250|500|mg^mg^UCUM||^Take with water||N|30|caps^capsule|2",
        "TQ1|1||TID|||||20240301|20240310",
        "RXR|PO^Oral^HL70162",
    ]
    request = one(convert(message(*segments)), "MedicationRequest")
    assert request["status"] == "active" and request["intent"] == "order"
    assert request["medicationCodeableConcept"]["coding"][0]["code"] == "00047040230"
    dosage = request["dosageInstruction"][0]
    assert dosage["text"] == "Take with water"
    assert dosage["route"]["coding"][0]["code"] == "PO"
    assert dosage["doseAndRate"][0]["doseRange"]["high"]["value"] == 500
    assert dosage["timing"]["code"]["coding"][0]["code"] == "TID"
    assert request["dispenseRequest"]["quantity"]["value"] == 30
    assert request["dispenseRequest"]["numberOfRepeatsAllowed"] == 2
    assert request["substitution"] == {"allowedBoolean": False}
    assert request["requester"]["display"] == "Dora Doc"
