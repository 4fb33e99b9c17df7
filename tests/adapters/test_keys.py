"""The business keys read from a canonical FHIR Bundle: the same kinds, and the same stored form,
as from HL7 v2, so one search finds a patient whichever way their messages came."""

from __future__ import annotations

from adapters import keys
from adapters.codecs import hl7v2
from adapters.mapping import convert

V2 = (
    "MSH|^~\\&|LIS|LABHOSP|HUB|HUB|20240102050000||ORU^R01^ORU_R01|LAB-77|P|2.5.1\r"
    "PID|1||MRN-222^^^LABHOSP^MR~NHS-999^^^NHS^NH||Łukasiewicz^Zoë||19751231|F\r"
    "PV1|1|O|||||||||||||||||VISIT-5\r"
    "ORC|RE|ORD-1^EHR|FIL-1^LAB\r"
    "OBR|1|ORD-1^EHR|FIL-1^LAB|24331-1^LIPID PANEL^LN|||20240102040000|||||||||||ACC-9\r"
    "OBX|1|NM|2345-7^GLUCOSE^LN||91|mg/dL|70-105|N|||F\r"
)


def found(found_keys: list[keys.Key]) -> set[tuple[str, str, str]]:
    return {(k.kind, k.value, k.authority) for k in found_keys}


def test_the_bundle_a_v2_message_becomes_carries_its_patient_order_and_visit_keys():
    bundle = convert(hl7v2.parse(V2.encode())).bundle
    from_fhir = found(keys.from_bundle(bundle, "LAB-77"))
    assert from_fhir == {
        ("control_id", "LAB-77", ""),
        ("identifier", "MRN-222", "LABHOSP"),
        ("identifier", "NHS-999", "NHS"),
        ("family", "Łukasiewicz", ""),
        ("given", "Zoë", ""),
        ("birth_date", "19751231", ""),
        ("placer_order", "ORD-1", ""),
        ("filler_order", "FIL-1", ""),
        ("visit", "VISIT-5", ""),
    }
    # The same keys as read from the v2 message itself (bar what FHIR does not keep: the sender,
    # and the accession number this map does not carry over).
    from_v2 = found(keys.extract(hl7v2.parse(V2.encode())))
    assert from_fhir <= from_v2


def test_a_single_resource_and_identifiers_typed_or_not():
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:id:CITY", "value": " P-1 "}, {"value": ""}],
        "name": [{"family": "Ñúñez", "given": ["Ana", "María"]}, {"text": "no parts"}],
        "birthDate": "1980-02",
    }
    assert found(keys.from_bundle(patient)) == {
        ("identifier", "P-1", "CITY"),
        ("family", "Ñúñez", ""),
        ("given", "Ana", ""),
        ("given", "María", ""),
        ("birth_date", "198002", ""),
    }
    assert keys.from_bundle(patient)[1].normalised == "nunez"

    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "ServiceRequest", "identifier": [{"value": "O-7"}]}},
            {
                "resource": {
                    "resourceType": "Encounter",
                    "identifier": [
                        {"value": "V-3"},
                        {"value": "not a visit", "type": {"coding": [{"code": "XX"}]}},
                    ],
                }
            },
            {"resource": {"resourceType": "Specimen", "accessionIdentifier": {"value": "A-1"}}},
            {"resource": {"resourceType": "Observation", "identifier": [{"value": "OBS-1"}]}},
        ],
    }
    assert found(keys.from_bundle(bundle)) == {
        ("placer_order", "O-7", ""),
        ("visit", "V-3", ""),
        ("accession", "A-1", ""),
    }


def test_a_malformed_bundle_gives_what_it_can_and_never_raises():
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            None,
            {"resource": "text"},
            {"resource": {"resourceType": "Patient", "identifier": {"value": "x"}, "name": [3]}},
            {"resource": {"resourceType": "Patient", "name": [{"family": 12, "given": "Al"}]}},
            {"resource": {"resourceType": "Patient", "identifier": [{"value": "MRN-9"}]}},
        ],
    }
    assert found(keys.from_bundle(bundle)) == {("identifier", "MRN-9", "")}
    assert keys.from_bundle({"resourceType": "Bundle", "entry": "none"}) == []
