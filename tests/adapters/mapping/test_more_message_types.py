"""The message types added to the maps, each over a realistic made-up message: OUL, RDS, RAS,
OMG, OMP, PPR, BAR, REF, the MDM notifications, the remaining ADT events and the query answers
(RSP^K22, ADR^A19) as a searchset of Patients. Every Bundle must be valid FHIR R4."""

from __future__ import annotations

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import convert, registry
from adapters.mapping.result import UnsupportedMessageType
from adapters.mapping.validation import validate_full

from .conftest import PID, PV1, message, one, resources


def msh(kind: str, control: str = "CTRL-1") -> str:
    return f"MSH|^~\\&|SENDER|GOOD HEALTH^1.2.3.4^ISO|HUB|HUB|20240301101500+0100||{kind}|{control}|P|2.5.1"


def converted(*segments: str):
    result = convert(message(*segments))
    validate_full(result.bundle)
    return result


def by_url(result) -> dict:
    return {e["fullUrl"]: e["resource"] for e in result.bundle["entry"]}


ORDER = "ORC|NW|RX-100^EHR|||||||20240301090000+0100|||1234^Prescriber^Pat^^^Dr"
RXE = (
    "RXE|1^BID|00904-5853^Metformin 500 mg tablet^NDC|500||mg|TAB^Tablet^L|Take with meals|||60|TAB"
)


def test_oul_r22_results_with_the_specimen_first():
    result = converted(
        msh("OUL^R22^OUL_R22"),
        PID,
        "SPM|1|SP-77^LAB||BLD^Blood^HL70487|||||||||||||20240301080000+0100",
        "OBR|1|PL-5^EHR|FL-5^LAB|57021-8^CBC W Auto Differential panel^LN|||20240301080000+0100"
        "||||||||||||||||||F",
        "ORC|SC|PL-5^EHR|FL-5^LAB||CM",
        "OBX|1|NM|718-7^Hemoglobin^LN||13.80|g/dL^g/dL^UCUM|12.0-16.0|N|||F",
        "OBX|2|NM|4544-3^Hematocrit^LN||41.2|%^%^UCUM|36-46|N|||F",
    )
    report = one(result, "DiagnosticReport")
    assert report["status"] == "final" and len(report["result"]) == 2
    specimen = one(result, "Specimen")
    assert [ref["reference"] for ref in report["specimen"]] == [
        e["fullUrl"] for e in result.bundle["entry"] if e["resource"] is specimen
    ]
    request = one(result, "ServiceRequest")
    assert request["status"] == "completed"  # the ORC after the OBR is the order's (ORC-5 CM)
    hemoglobin = next(
        o for o in resources(result, "Observation") if o["code"]["coding"][0]["code"] == "718-7"
    )
    assert str(hemoglobin["valueQuantity"]["value"]) == "13.80"


def test_oul_r24_results_with_the_order_first():
    result = converted(
        msh("OUL^R24^OUL_R24"),
        PID,
        "OBR|1|PL-6^EHR|FL-6^LAB|2345-7^Glucose^LN|||20240301080000+0100||||||||||||||||||P",
        "ORC|SC|PL-6^EHR|FL-6^LAB||IP",
        "SPM|1|SP-78^LAB||SER^Serum^HL70487",
        "OBX|1|NM|2345-7^Glucose^LN||101|mg/dL^mg/dL^UCUM|70-99|H|||P",
    )
    report = one(result, "DiagnosticReport")
    assert report["status"] == "preliminary" and report["specimen"]
    assert one(result, "Observation")["interpretation"][0]["coding"][0]["code"] == "H"


def test_rds_o13_dispense_points_at_the_order():
    result = converted(
        msh("RDS^O13^RDS_O13"),
        PID,
        PV1,
        ORDER,
        RXE,
        "RXD|1|00904-5853^Metformin 500 mg tablet^NDC|20240301113000+0100|60|TAB^Tablet^L"
        "|TAB|RX-7781|2|Dispense in original bottle|555^Pharmacist^Paula^^^RPh|N|||||||LOT-9|20260101",
        "RXR|PO^Oral^HL70162",
    )
    dispense = one(result, "MedicationDispense")
    request = one(result, "MedicationRequest")
    urls = {id(r): u for u, r in by_url(result).items()}
    assert dispense["authorizingPrescription"] == [{"reference": urls[id(request)]}]
    assert dispense["status"] == "completed"
    assert dispense["quantity"]["value"] == 60
    assert dispense["whenHandedOver"].startswith("2024-03-01T11:30:00")
    assert dispense["identifier"][0]["value"] == "RX-7781"
    assert dispense["dosageInstruction"][0]["route"]["coding"][0]["code"] == "PO"
    assert dispense["substitution"] == {"wasSubstituted": False}
    assert "LOT-9" in dispense["note"][-1]["text"]


def test_ras_o17_administration_points_at_the_order():
    result = converted(
        msh("RAS^O17^RAS_O17"),
        PID,
        PV1,
        ORDER,
        RXE,
        "RXA|0|1|20240301120000+0100|20240301120500+0100|00904-5853^Metformin 500 mg tablet^NDC"
        "|500|mg^mg^UCUM||||||||||||CP",
        "RXR|PO^Oral^HL70162",
        "RXA|0|2|20240301200000+0100||00904-5853^Metformin 500 mg tablet^NDC|999"
        "||||||||||||PATREF^Patient refused^L||RE",
    )
    given, refused = resources(result, "MedicationAdministration")
    request_url = next(
        u for u, r in by_url(result).items() if r["resourceType"] == "MedicationRequest"
    )
    assert given["status"] == "completed" and refused["status"] == "not-done"
    assert given["request"] == {"reference": request_url}
    assert given["effectivePeriod"]["end"].startswith("2024-03-01T12:05:00")
    assert given["dosage"]["dose"]["value"] == 500
    assert given["dosage"]["route"]["coding"][0]["code"] == "PO"
    assert refused["statusReason"][0]["coding"][0]["code"] == "PATREF"
    assert "dosage" not in refused  # 999: the amount is unknown


def test_omg_o19_general_order():
    result = converted(
        msh("OMG^O19^OMG_O19"),
        PID,
        "ORC|NW|CARD-9^EHR||||||||||1234^Prescriber^Pat^^^Dr",
        "OBR|1|CARD-9^EHR||93000^Electrocardiogram^CPT|R|20240301090000+0100",
    )
    request = one(result, "ServiceRequest")
    assert request["code"]["coding"][0]["code"] == "93000"
    assert request["status"] == "active" and request["intent"] == "order"


def test_omp_o09_the_prescription_is_the_request():
    result = converted(
        msh("OMP^O09^OMP_O09"),
        PID,
        "ORC|NW|RX-200^EHR|||||||20240301090000+0100",
        "RXO|00093-0058^Amoxicillin 500 mg capsule^NDC|500||mg|CAP^Capsule^L||||N||21|CAP|1",
        "RXR|PO^Oral^HL70162",
    )
    request = one(result, "MedicationRequest")
    assert request["intent"] == "order"
    assert request["identifier"][0]["value"] == "RX-200"
    assert request["dispenseRequest"]["quantity"]["value"] == 21


def test_ppr_problems_become_conditions():
    prb = "PRB|AD|20240301|44054006^Diabetes mellitus type 2^SCT|PROB-1|||||||||C|||20190115"
    resolved = "PRB|UP|20240301|38341003^Hypertension^SCT|PROB-2|||||20240215|||||||20150101"
    result = converted(msh("PPR^PC1^PPR_PC1"), PID, PV1, prb, resolved)
    diabetes, hypertension = resources(result, "Condition")
    assert diabetes["category"][0]["coding"][0]["code"] == "problem-list-item"
    assert diabetes["clinicalStatus"]["coding"][0]["code"] == "active"
    assert diabetes["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert diabetes["onsetDateTime"] == "2019-01-15"
    assert hypertension["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert hypertension["abatementDateTime"] == "2024-02-15"
    deleted = converted(msh("PPR^PC3^PPR_PC3"), PID, prb)
    condition = one(deleted, "Condition")
    assert condition["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in condition


def test_bar_accounts_with_diagnoses_procedures_and_insurance():
    segments = (
        PID,
        PV1,
        "DG1|1||E11.9^Type 2 diabetes mellitus^I10||20240301|A",
        "PR1|1||99213^Office visit^CPT||20240301100000+0100",
        "GT1|1||Everyman^Adam||1 Main St^^Springfield^IL^62701|||19610615|M||SEL",
        "IN1|1|PPO^Preferred^L|INS-9^^^NAIC|Acme Health||||GRP-1||||||||||SEL",
    )
    result = converted(msh("BAR^P01^BAR_P01"), "EVN|P01|20240301", *segments)
    assert one(result, "Condition")["code"]["coding"][0]["code"] == "E11.9"
    assert one(result, "Procedure")["code"]["coding"][0]["code"] == "99213"
    assert one(result, "Coverage")["payor"]
    assert one(result, "Account")["status"] == "active"
    purged = converted(msh("BAR^P02^BAR_P02"), "EVN|P02|20240301", PID, PV1, segments[4])
    assert one(purged, "Account")["status"] == "inactive"


def test_ref_i12_referral():
    result = converted(
        msh("REF^I12^REF_I12"),
        "RF1|A^Accepted^HL70283|R^Routine^HL70280|MED^Medical^HL70281|||REF-42",
        PID,
        "DG1|1||R07.9^Chest pain^I10",
    )
    referral = one(result, "ServiceRequest")
    assert referral["status"] == "active"
    assert referral["identifier"][0]["value"] == "REF-42"
    assert one(result, "Condition")


@pytest.mark.parametrize("event", ["T01", "T03", "T05", "T07", "T09", "T11"])
def test_mdm_notifications_describe_the_document(event):
    txa = "TXA|1|CN^Consultation note^HL70270|TX|20240301090000+0100||||||||DOC-88||||AU||AV"
    result = converted(msh(f"MDM^{event}^MDM_T01"), "EVN|" + event, PID, PV1, txa)
    doc = one(result, "DocumentReference")
    assert doc["masterIdentifier"]["value"] == "DOC-88"
    assert doc["status"] == ("entered-in-error" if event == "T11" else "current")


@pytest.mark.parametrize(
    "event",
    [
        "A33",
        "A38",
        "A43",
        "A44",
        "A45",
        "A50",
        "A51",
        "A52",
        "A53",
        "A54",
        "A55",
        "A60",
        "A61",
        "A62",
    ],
)
def test_the_remaining_adt_events_give_patient_and_visit(event):
    result = converted(msh(f"ADT^{event}"), f"EVN|{event}|20240301", PID, PV1)
    assert one(result, "Patient")["name"][0]["family"] == "Everyman"
    assert one(result, "Encounter")


def test_rsp_k22_is_a_searchset_of_the_patients_found():
    result = converted(
        msh("RSP^K22^RSP_K21"),
        "MSA|AA|Q-1",
        "QAK|Q-1|OK|Q22^Find Candidates^HL7nnnn|2",
        "QPD|Q22^Find Candidates^HL7nnnn|Q-1|@PID.5.1^EVERYMAN",
        PID,
        "PID|2||67890^^^HOSP&1.2.3.4.5&ISO^MR||Everyman^Eve||19640203|F",
    )
    bundle = result.bundle
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert [e["resource"]["name"][0]["given"][0] for e in matches] == ["Adam", "Eve"]
    assert all("request" not in e for e in bundle["entry"])


def test_rsp_k22_without_a_match_is_an_empty_searchset():
    result = converted(msh("RSP^K22^RSP_K21"), "MSA|AA|Q-2", "QAK|Q-2|NF")
    assert result.bundle["type"] == "searchset" and result.bundle["total"] == 0
    assert "entry" not in result.bundle


def test_adr_a19_is_a_searchset_too():
    result = converted(msh("ADR^A19^ADR_A19"), "MSA|AA|Q-3", "EVN|A19", PID, PV1)
    assert result.bundle["type"] == "searchset" and result.bundle["total"] == 1


def test_a_type_without_a_map_is_refused_with_the_reason():
    with pytest.raises(UnsupportedMessageType) as caught:
        convert(hl7v2.parse(msh("MFN^M02^MFN_M02").encode() + b"\rMFI|PRA\r"))
    assert "MFN^M02" in str(caught.value)
    assert "MFN" not in registry.supported_codes()


US_CORE_PID = (
    "PID|1||12345^^^HOSP&1.2.3.4.5&ISO^MR||Everyman^Adam||19610615|M"
    "||2106-3^White^CDCREC~2028-9^Asian^CDCREC~2039-6^Japanese^CDCREC||||||||||||H^Hispanic or Latino^HL70189"
)


def test_us_core_race_and_ethnicity_on_request():
    raw = message(msh("ADT^A04"), US_CORE_PID)
    plain = one(convert(raw), "Patient")
    assert not any("us-core" in e["url"] for e in plain.get("extension", []))
    result = convert(raw, profile="us-core")
    validate_full(result.bundle)
    patient = one(result, "Patient")
    assert patient["meta"]["profile"] == [
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
    ]
    race, ethnicity = (e for e in patient["extension"] if "us-core" in e["url"])
    assert race["url"].endswith("us-core-race")
    parts = [
        (p["url"], p.get("valueCoding", {}).get("code") or p.get("valueString"))
        for p in race["extension"]
    ]
    assert parts == [
        ("ombCategory", "2106-3"),
        ("ombCategory", "2028-9"),
        ("detailed", "2039-6"),
        ("text", "White, Asian, Japanese"),
    ]
    assert race["extension"][0]["valueCoding"]["system"] == "urn:oid:2.16.840.1.113883.6.238"
    assert ethnicity["url"].endswith("us-core-ethnicity")
    assert ethnicity["extension"][0]["valueCoding"]["code"] == "2135-2"  # v2 H, as CDC codes it
    assert ethnicity["extension"][-1] == {"url": "text", "valueString": "Hispanic or Latino"}


def test_us_core_unknown_race_is_a_null_flavor():
    raw = message(msh("ADT^A04"), "PID|1||12345^^^HOSP^MR||Everyman^Adam||19610615|M||U^Unknown")
    patient = one(convert(raw, profile="us-core"), "Patient")
    [race] = patient["extension"]
    assert race["extension"][0]["valueCoding"]["code"] == "UNK"
