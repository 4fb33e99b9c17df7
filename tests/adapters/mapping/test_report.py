"""OBR -> DiagnosticReport; the ORU message map (groups, patients)."""

from __future__ import annotations

import pytest

from adapters.mapping import MappingError, convert

from .conftest import PID, entry_of, one, oru, resources

OBR = "OBR|1|PL-1^EHR|FL-9^LAB^2.16.840.1.9^ISO|24331-1^Lipid panel^LN|||20240301083000-0500|||||||||||||||20240301100000-0500||CH|F"


def test_obr_maps_identifiers_status_code_category_dates_and_results():
    result = convert(
        oru(
            PID,
            OBR,
            "OBX|1|NM|2093-3^Chol^LN||212|mg/dL|||||F",
            "OBX|2|NM|2571-8^Trig^LN||150|mg/dL|||||F",
        )
    )
    report = one(result, "DiagnosticReport")
    assert report["status"] == "final"
    assert report["code"]["coding"][0]["code"] == "24331-1"
    assert report["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
        "code": "CH",
    }
    assert report["effectiveDateTime"] == "2024-03-01T08:30:00-05:00"
    assert report["issued"] == "2024-03-01T10:00:00-05:00"
    filler, placer = report["identifier"]
    assert filler["type"]["coding"][0]["code"] == "FILL"
    assert filler == {**filler, "system": "urn:oid:2.16.840.1.9", "value": "FL-9"}
    assert placer["value"] == "PL-1"
    obs_urls = [entry_of(result, o)["fullUrl"] for o in resources(result, "Observation")]
    assert [r["reference"] for r in report["result"]] == obs_urls
    assert (
        entry_of(result, report)["request"]["url"]
        == "DiagnosticReport?identifier=urn:oid:2.16.840.1.9|FL-9"
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [("P", "preliminary"), ("C", "corrected"), ("X", "cancelled"), ("I", "registered")],
)
def test_result_status_table_0123(code, status):
    obr = OBR.replace("||CH|F", f"||CH|{code}")
    assert one(convert(oru(PID, obr)), "DiagnosticReport")["status"] == status


def test_report_without_code_is_a_mapping_error():
    with pytest.raises(MappingError) as err:
        convert(oru(PID, "OBR|1|PL-1||"))
    assert (err.value.field, err.value.target) == ("OBR-4", "DiagnosticReport.code")


def test_observations_follow_their_obr():
    obr2 = OBR.replace("OBR|1|PL-1", "OBR|2|PL-2").replace("FL-9", "FL-10")
    result = convert(
        oru(
            PID,
            OBR,
            "OBX|1|ST|1-8^A^LN||a||||||F",
            obr2,
            "OBX|1|ST|2-6^B^LN||b||||||F",
            "OBX|2|ST|3-4^C^LN||c||||||F",
        )
    )
    first, second = resources(result, "DiagnosticReport")
    assert len(first["result"]) == 1 and len(second["result"]) == 2


def test_an_oru_for_two_patients_gives_two_patients_with_their_reports():
    pid2 = "PID|2||999^^^HOSP&1.2.3.4.5&ISO^MR||Other^Olga"
    result = convert(
        oru(
            PID,
            OBR,
            "OBX|1|ST|1-8^A^LN||a||||||F",
            pid2,
            OBR.replace("FL-9", "FL-11"),
            "OBX|1|ST|1-8^A^LN||b||||||F",
        )
    )
    patients = resources(result, "Patient")
    assert len(patients) == 2
    second_url = entry_of(result, patients[1])["fullUrl"]
    assert resources(result, "DiagnosticReport")[1]["subject"]["reference"] == second_url
    assert resources(result, "Observation")[1]["subject"]["reference"] == second_url


def test_oru_without_obr_is_a_mapping_error():
    with pytest.raises(MappingError) as err:
        convert(oru(PID, "OBX|1|ST|1-8^A^LN||a||||||F"))
    assert err.value.segment == "OBR"
