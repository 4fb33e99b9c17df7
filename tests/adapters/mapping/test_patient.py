"""PID/PD1 -> Patient, MRG -> Patient.link, and partial success on a bad field."""

from __future__ import annotations

import pytest

from adapters.mapping import MappingError, convert

from .conftest import PID, adt, entry_of, one, resources


def test_pid_maps_identifiers_name_birth_gender_address_telecom(convert_segments):
    result = convert_segments("A01", PID)
    patient = one(result, "Patient")
    assert patient["identifier"][0]["system"] == "urn:oid:1.2.3.4.5"
    assert patient["identifier"][0]["value"] == "12345"
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert patient["name"] == [
        {
            "use": "official",
            "family": "Everyman",
            "given": ["Adam", "A"],
            "prefix": ["Dr"],
            "suffix": ["III", "MD"],
        }
    ]
    assert patient["birthDate"] == "1961-06-15"
    assert patient["gender"] == "male"
    assert patient["address"][0]["city"] == "Springfield"
    assert {"system": "email", "value": "adam@example.org"} in patient["telecom"]
    work = [t for t in patient["telecom"] if t.get("use") == "work"]
    assert work and work[0]["value"] == "+1 (217) 5559999"
    assert patient["maritalStatus"]["coding"][0]["code"] == "M"
    assert result.issues == []


def test_patient_is_a_conditional_update_on_its_mr_identifier(convert_segments):
    result = convert_segments("A01", PID)
    entry = entry_of(result, one(result, "Patient"))
    assert entry["request"] == {
        "method": "PUT",
        "url": "Patient?identifier=urn:oid:1.2.3.4.5|12345",
    }
    assert entry["fullUrl"].startswith("urn:uuid:")
    assert "id" not in entry["resource"]  # the conditional update decides the server id


def test_the_same_patient_gets_the_same_fullurl_in_any_message(convert_segments):
    first = entry_of(r1 := convert_segments("A01", PID), one(r1, "Patient"))
    second = entry_of(r2 := convert_segments("A08", PID), one(r2, "Patient"))
    assert first["fullUrl"] == second["fullUrl"]


def test_bad_birth_date_converts_the_rest_and_reports_the_field():
    pid = PID.replace("|19610615|", "|Aug 15, 1942|")
    result = convert(adt("A01", pid))
    patient = one(result, "Patient")
    assert "birthDate" not in patient
    assert patient["name"][0]["family"] == "Everyman"
    [issue] = result.issues
    assert issue.segment == "PID"
    assert issue.field == "PID-7"
    assert issue.value == "Aug 15, 1942"
    assert issue.target == "Patient.birthDate"
    assert issue.origin == "sender"
    assert "YYYY" in issue.reason


def test_unknown_sex_code_is_reported_not_guessed(convert_segments):
    result = convert_segments("A01", PID.replace("|19610615|M|", "|19610615|Q|"))
    assert "gender" not in one(result, "Patient")
    assert [(i.field, i.value, i.target) for i in result.issues] == [
        ("PID-8", "Q", "Patient.gender")
    ]


@pytest.mark.parametrize(
    ("code", "gender"), [("F", "female"), ("U", "unknown"), ("O", "other"), ("A", "other")]
)
def test_administrative_sex_table_0001(convert_segments, code, gender):
    result = convert_segments("A01", PID.replace("|19610615|M|", f"|19610615|{code}|"))
    assert one(result, "Patient")["gender"] == gender


def test_birth_time_goes_to_the_birthtime_extension(convert_segments):
    result = convert_segments("A01", PID.replace("|19610615|", "|196106151030-0500|"))
    patient = one(result, "Patient")
    assert patient["birthDate"] == "1961-06-15"
    ext = patient["_birthDate"]["extension"][0]
    assert ext["url"].endswith("patient-birthTime")
    assert ext["valueDateTime"] == "1961-06-15T10:30:00-05:00"


def test_identifier_without_authority_is_scoped_to_the_sending_facility(convert_segments):
    result = convert_segments("A01", "PID|1||777^^^^MR||Doe^Jane")
    patient = one(result, "Patient")
    assert patient["identifier"][0]["system"] == "urn:oid:1.2.3.4"  # MSH-4's universal id
    [issue] = result.issues
    assert issue.field == "PID-3" and issue.severity == "information"


def test_explicit_null_values_are_absent(convert_segments):
    result = convert_segments("A01", 'PID|1||1^^^H^MR||Doe^Jane||""|""')
    patient = one(result, "Patient")
    assert "birthDate" not in patient and "gender" not in patient


def test_deceased_and_multiple_birth(convert_segments):
    pid = "PID|1||1^^^H^MR||Doe^Jane|||||||||||||||||||Y|2||||20240101120000+0000|Y"
    patient = one(convert_segments("A01", pid), "Patient")
    assert patient["multipleBirthInteger"] == 2
    assert patient["deceasedDateTime"] == "2024-01-01T12:00:00+00:00"


def test_pd1_primary_care_provider_becomes_general_practitioner(convert_segments):
    result = convert_segments("A01", PID, "PD1|||Clinic^^C77|88^Hippo^Harold^^^Dr")
    patient = one(result, "Patient")
    kinds = sorted(g["reference"] for g in patient["generalPractitioner"])
    assert len(kinds) == 2
    assert one(result, "Practitioner")["name"][0]["family"] == "Hippo"
    assert one(result, "Organization")["name"] == "Clinic"


def test_message_without_pid_is_a_mapping_error():
    with pytest.raises(MappingError) as err:
        convert(adt("A01", "EVN|A01|20240301"))
    assert err.value.segment == "PID"
    assert err.value.target == "Patient"
    assert err.value.permanent


def test_merge_links_the_old_record_to_the_survivor():
    result = convert(adt("A40", "PID|||MR1^^^XYZ^MR||Doe^Jane", "MRG|MR2^^^XYZ^MR"))
    survivor, old = resources(result, "Patient")
    assert old["active"] is False
    assert old["link"] == [
        {"other": {"reference": entry_of(result, survivor)["fullUrl"]}, "type": "replaced-by"}
    ]
    assert survivor["link"][0]["type"] == "replaces"
    assert survivor["link"][0]["other"]["reference"] == entry_of(result, old)["fullUrl"]


def test_merge_without_mrg_is_a_mapping_error():
    with pytest.raises(MappingError) as err:
        convert(adt("A40", "PID|||MR1^^^XYZ^MR||Doe^Jane"))
    assert err.value.segment == "MRG"
