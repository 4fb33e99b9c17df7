"""What the fidelity work added: RP results as reports, the placer group number, PDA/ACC,
TXA in a result, RXC compounds, one RelatedPerson for the insured who is the guarantor."""

from __future__ import annotations

from adapters.mapping import convert
from adapters.mapping.validation import validate_full

from .conftest import PID, PV1, adt, entry_of, message, one, oru, resources

ORC = "ORC|RE|PL-1^EHR|FL-1^LAB|GRP-9^EHR"
OBR = "OBR|1|PL-1^EHR|FL-1^LAB|24331-1^Lipid panel^LN|||20240301080000-0500||||||||||||||||||F"
RP_OBX = (
    "OBX|2|RP|18748-4^Diagnostic imaging study^LN||https://pacs.example.org/study/77^PACS^image^JPEG"
    "||||||F|||20240301083000-0500|||||||IMG-77^PACS"
)


def test_an_rp_result_is_a_report_presented_by_its_url():
    nm = "OBX|1|NM|2093-3^Cholesterol^LN||5.2|mmol/L|<5.2|H|||F"
    result = convert(oru(PID, PV1, ORC, OBR, nm, RP_OBX))
    validate_full(result.bundle)
    assert [o["code"]["coding"][0]["code"] for o in resources(result, "Observation")] == ["2093-3"]
    image, order_report = sorted(resources(result, "DiagnosticReport"), key=lambda r: "result" in r)
    assert image["code"]["coding"][0]["code"] == "18748-4"
    assert image["presentedForm"] == [
        {"contentType": "image/jpeg", "url": "https://pacs.example.org/study/77"}
    ]
    assert image["status"] == "final"
    assert image["identifier"][0]["value"] == "IMG-77"
    assert image["effectiveDateTime"].startswith("2024-03-01T08:30:00")
    request = entry_of(result, one(result, "ServiceRequest"))["fullUrl"]
    assert image["basedOn"] == [{"reference": request}]
    assert len(order_report["result"]) == 1


def test_the_placer_group_number_identifies_the_order_and_its_report():
    result = convert(oru(PID, ORC, OBR, "OBX|1|NM|2093-3^Cholesterol^LN||5.2|mmol/L"))
    request, report = one(result, "ServiceRequest"), one(result, "DiagnosticReport")
    for resource in (request, report):
        group = [i for i in resource["identifier"] if i["type"]["coding"][0]["code"] == "PGN"]
        assert [i["value"] for i in group] == ["GRP-9"]
    assert request["requisition"]["value"] == "GRP-9"


def test_pda_and_acc_become_observations_about_the_patient():
    pda = "PDA|I21^Acute MI^I10||Y|20240301120000+0100|55^Cert^Robin|Y|20240302^20240303|66^Path^John|N"
    acc = "ACC|20240215|MV^Motor vehicle^HL70050|||Y|N|77^Desk^Dee|rear-ended at a light||Y|||ACC-1"
    result = convert(adt("A03", PID, PV1, pda, acc))
    validate_full(result.bundle)
    by_code = {o["code"]["coding"][0]["code"]: o for o in resources(result, "Observation")}
    assert sorted(by_code) == ["autopsy", "coroner", "death-certificate", "injury-incident"]
    assert by_code["death-certificate"]["valueCodeableConcept"]["coding"][0]["code"] == "Y"
    assert by_code["death-certificate"]["effectiveDateTime"].startswith("2024-03-01T12:00:00")
    assert by_code["autopsy"]["effectivePeriod"] == {"start": "2024-03-02", "end": "2024-03-03"}
    assert by_code["coroner"]["valueCodeableConcept"]["coding"][0]["code"] == "N"
    accident = by_code["injury-incident"]
    assert accident["valueString"] == "rear-ended at a light"
    assert accident["effectiveDateTime"] == "2024-02-15"
    flags = {
        c["code"]["coding"][0]["code"]: c["valueCodeableConcept"]["coding"][0]["code"]
        for c in accident["component"]
    }
    assert flags == {"AJRI": "Y", "ADI": "N", "PNI": "Y"}
    assert accident["identifier"][0]["value"] == "ACC-1"


def test_a_txa_in_a_result_is_a_document_with_its_body():
    obx = "OBX|1|ED|||^application^pdf^Base64^JVBERi0xLjQK"
    txa = "TXA|1|DS|AP|20240301090000-0500||20240301080000-0500||||||DOC-5||||AU||AV"
    result = convert(oru(PID, obx, txa, OBR, "OBX|1|NM|2093-3^Cholesterol^LN||5.2|mmol/L"))
    validate_full(result.bundle)
    doc = one(result, "DocumentReference")
    assert doc["masterIdentifier"]["value"] == "DOC-5"
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert attachment["data"] == "JVBERi0xLjQK"
    assert attachment["creation"].startswith("2024-03-01T08:00:00")


MSH_RDE = "MSH|^~\\&|PHARM|GH^1.2.3^ISO|EHR|HUB|20240301101500+0100||RDE^O11^RDE_O11|RX-1|P|2.5.1"


def test_a_compound_is_a_medication_with_its_ingredients():
    rde = message(
        MSH_RDE,
        PID,
        "ORC|NW|RX-ORD-1^EHR",
        "RXE|1^^^20240301|0143963401^Nicardipine 40 MG/200 ML bag^NDC|5||mg/hr|BAG^Bag^L",
        "RXC|B|338-0049^Sodium chloride 0.9%^NDC|200|mL^mL^UCUM",
        "RXC|A|0143-9634^Nicardipine^NDC|40|mg^mg^UCUM|0.20|mg/mL^mg/mL^UCUM|||",
    )
    result = convert(rde)
    validate_full(result.bundle)
    request = one(result, "MedicationRequest")
    medications = {
        e["fullUrl"]: e["resource"]
        for e in result.bundle["entry"]
        if e["resource"]["resourceType"] == "Medication"
    }
    drug = medications[request["medicationReference"]["reference"]]
    assert drug["code"]["coding"][0]["code"] == "0143963401"
    assert drug["form"]["coding"][0]["code"] == "BAG"
    base, active = drug["ingredient"]
    assert (base["isActive"], active["isActive"]) == (False, True)
    saline = medications[base["itemReference"]["reference"]]
    assert saline["code"]["coding"][0]["code"] == "338-0049"
    assert saline["amount"]["numerator"] == {
        "value": 200,
        "unit": "mL",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }
    assert str(active["strength"]["numerator"]["value"]) == "0.20"  # as written
    assert "medicationCodeableConcept" not in request


def test_a_plain_drug_stays_inline():
    rde = message(MSH_RDE, PID, "ORC|NW|RX-ORD-2^EHR", "RXE|1|00047040230^Ampicillin^NDC|250||mg")
    request = one(convert(rde), "MedicationRequest")
    assert request["medicationCodeableConcept"]["coding"][0]["code"] == "00047040230"


def test_the_insured_who_is_the_guarantor_is_one_related_person():
    in1 = "IN1|1|PLAN^Plan|INS-1^^^INS|Insurer||||||||||||Everyman^Eve|SPO|19620101"
    gt1 = "GT1|1||Everyman^Eve||1 Main St|||19620101|F||SPO"
    result = convert(adt("A01", PID, in1, gt1))
    person = one(result, "RelatedPerson")
    url = entry_of(result, person)["fullUrl"]
    assert one(result, "Coverage")["subscriber"]["reference"] == url
    assert one(result, "Account")["guarantor"][0]["party"]["reference"] == url


def test_a_coverage_without_an_insurer_says_the_payor_is_unknown():
    coverage = one(convert(adt("A01", PID, "IN1|1|PAR^PARENT")), "Coverage")
    assert coverage["payor"] == [
        {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "unknown",
                }
            ]
        }
    ]


def test_a_repeated_value_carries_its_range_on_each_component():
    obx = "OBX|1|NM|8867-4^Heart rate^LN||60~120|/min^/min^UCUM|70-80|A|||F"
    observation = one(convert(oru(PID, ORC, OBR, obx)), "Observation")
    assert "referenceRange" not in observation
    ranges = [c["referenceRange"][0] for c in observation["component"]]
    assert [(r["low"]["value"], r["high"]["value"]) for r in ranges] == [(70, 80), (70, 80)]
