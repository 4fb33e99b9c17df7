"""PV1/PV2 -> Encounter."""

from __future__ import annotations

import pytest

from .conftest import PID, PV1, entry_of, one, resources


def test_pv1_maps_class_identifier_period_participants_location(convert_segments):
    result = convert_segments("A01", PID, PV1)
    enc = one(result, "Encounter")
    assert enc["status"] == "in-progress"
    assert enc["class"] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "IMP",
        "display": "inpatient encounter",
    }
    assert enc["identifier"][0]["value"] == "V100"
    assert enc["identifier"][0]["type"]["coding"][0]["code"] == "VN"
    assert enc["period"] == {"start": "2024-03-01T09:00:00+01:00"}
    assert enc["subject"]["reference"] == entry_of(result, one(result, "Patient"))["fullUrl"]
    [participant] = enc["participant"]
    assert participant["type"][0]["coding"][0]["code"] == "ATND"
    doctor = one(result, "Practitioner")
    assert doctor["identifier"][0] == {"system": "urn:oid:2.16.840.1.113883.4.6", "value": "1234"}
    assert entry_of(result, doctor)["request"]["method"] == "POST"  # referenced, not owned
    assert enc["serviceType"]["coding"][0]["code"] == "MED"
    assert enc["hospitalization"]["admitSource"]["coding"][0]["code"] == "7"
    # PL levels as a Location hierarchy: facility > point of care > room > bed, the
    # encounter at the point of care
    places = {p["name"]: p for p in resources(result, "Location")}
    assert list(places) == ["GOOD HEALTH", "4E", "401", "B"]
    kinds = [p["physicalType"]["coding"][0]["code"] for p in places.values()]
    assert kinds == ["si", "wa", "ro", "bd"]
    url = {name: entry_of(result, p)["fullUrl"] for name, p in places.items()}
    assert places["B"]["partOf"]["reference"] == url["401"]
    assert places["401"]["partOf"]["reference"] == url["4E"]
    assert places["4E"]["partOf"]["reference"] == url["GOOD HEALTH"]
    assert enc["location"][0]["location"] == {"reference": url["4E"], "display": "4E 401 B"}


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("A01", "in-progress"),
        ("A03", "finished"),
        ("A04", "in-progress"),
        ("A05", "planned"),
        ("A11", "cancelled"),
    ],
)
def test_status_follows_the_trigger_event(convert_segments, event, status):
    assert one(convert_segments(event, PID, PV1), "Encounter")["status"] == status


def test_admission_of_a_preadmitted_patient_is_in_progress(convert_segments):
    preadmit = PV1.replace("PV1|1|I|", "PV1|1|P|")
    assert one(convert_segments("A01", PID, preadmit), "Encounter")["status"] == "in-progress"
    assert one(convert_segments("A02", PID, preadmit), "Encounter")["status"] == "in-progress"


def test_a08_derives_status_from_discharge_and_class(convert_segments):
    pv1 = PV1 + "|20240305120000+0100"
    assert one(convert_segments("A08", PID, pv1), "Encounter")["status"] == "finished"
    preadmit = PV1.replace("PV1|1|I|", "PV1|1|P|")
    assert one(convert_segments("A08", PID, preadmit), "Encounter")["status"] == "planned"


@pytest.mark.parametrize(("code", "target"), [("E", "EMER"), ("O", "AMB"), ("P", "PRENC")])
def test_patient_class_table_0004(convert_segments, code, target):
    pv1 = PV1.replace("PV1|1|I|", f"PV1|1|{code}|")
    assert one(convert_segments("A04", PID, pv1), "Encounter")["class"]["code"] == target


def test_unknown_patient_class_is_reported_and_class_unknown(convert_segments):
    result = convert_segments("A04", PID, PV1.replace("PV1|1|I|", "PV1|1|Z|"))
    assert one(result, "Encounter")["class"]["code"] == "UNK"
    assert [i.field for i in result.issues] == ["PV1-2"]


def test_no_encounter_for_a_person_update_without_visit(convert_segments):
    result = convert_segments("A28", PID, "PV1||N")
    assert resources(result, "Encounter") == []


def test_pv2_admit_reason_and_length_of_stay(convert_segments):
    result = convert_segments("A01", PID, PV1, "PV2|||CP^Chest pain^99LOCAL||||||||3")
    enc = one(result, "Encounter")
    assert enc["reasonCode"][0]["coding"][0]["code"] == "CP"
    assert enc["length"] == {
        "value": 3,
        "unit": "days",
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }


def test_same_doctor_twice_is_one_practitioner(convert_segments):
    doctor = "1234^Attend^Ann^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO"
    pv1 = PV1.replace("|||MED|", f"|{doctor}||MED|")  # PV1-7 attending and PV1-9 consultant
    result = convert_segments("A01", PID, pv1)
    assert len(resources(result, "Practitioner")) == 1
    assert len(one(result, "Encounter")["participant"]) == 2
