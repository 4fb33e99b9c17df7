"""OBX -> Observation for every value type; NTE notes; ED -> DocumentReference."""

from __future__ import annotations

import base64

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import convert
from adapters.mapping.fhir_to_v2 import to_v2

from .conftest import PID, entry_of, one, oru, resources

OBR = "OBR|1|PL-1^EHR|FL-9^LAB|24331-1^Lipid panel^LN|||20240301083000-0500|||||||||||||||20240301100000-0500|||F"


def observation(obx: str, *extra: str) -> tuple[dict, object]:
    result = convert(oru(PID, OBR, obx, *extra))
    return one(result, "Observation"), result


def test_nm_with_ucum_units_reference_range_and_interpretation():
    obs, result = observation(
        "OBX|1|NM|2093-3^Cholesterol^LN||212|mg/dL^^UCUM|<200|H|||F|||20240301083000-0500"
    )
    assert obs["status"] == "final"
    assert obs["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "2093-3",
        "display": "Cholesterol",
    }
    assert obs["valueQuantity"] == {
        "value": 212,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert obs["referenceRange"] == [
        {
            "high": {
                "value": 200,
                "unit": "mg/dL",
                "system": "http://unitsofmeasure.org",
                "code": "mg/dL",
            }
        }
    ]
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs["effectiveDateTime"] == "2024-03-01T08:30:00-05:00"
    assert obs["subject"]["reference"] == entry_of(result, one(result, "Patient"))["fullUrl"]
    assert result.issues == []


def test_nm_that_is_not_a_number_is_kept_as_text_and_reported():
    obs, result = observation("OBX|1|NM|2093-3^Cholesterol^LN||>500|mg/dL|||||F")
    assert obs["valueString"] == ">500"
    [issue] = result.issues
    assert (issue.field, issue.value, issue.target, issue.origin) == (
        "OBX-5",
        ">500",
        "Observation.value[x]",
        "sender",
    )


def test_coded_value():
    obs, _ = observation("OBX|1|CWE|600-7^Culture^LN||27268008^Salmonella^SCT||||||P")
    assert obs["status"] == "preliminary"
    assert obs["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "27268008",
        "display": "Salmonella",
    }


@pytest.mark.parametrize(
    ("vtype", "value", "expected"),
    [
        ("ST", "positive", "positive"),
        ("TX", "line one~line two", "line one\nline two"),
        ("FT", "first\\.br\\second", "first\nsecond"),
    ],
)
def test_text_values(vtype, value, expected):
    obs, _ = observation(f"OBX|1|{vtype}|11526-1^Note^LN||{value}||||||F")
    assert obs["valueString"] == expected


def test_sn_range_and_ratio():
    obs, _ = observation("OBX|1|SN|5196-1^Titer^LN||^1^:^128||||||F")
    assert obs["valueRatio"] == {"numerator": {"value": 1}, "denominator": {"value": 128}}
    obs, _ = observation("OBX|1|SN|5196-1^Titer^LN||<^0.5|mg||||F")
    assert obs["valueQuantity"]["comparator"] == "<"


def test_date_and_time_values():
    obs, _ = observation("OBX|1|DT|11778-8^EDD^LN||20240915||||||F")
    assert obs["valueDateTime"] == "2024-09-15"
    obs, _ = observation("OBX|1|TS|11778-8^EDD^LN||202409151030-0500||||||F")
    assert obs["valueDateTime"] == "2024-09-15T10:30:00-05:00"
    obs, _ = observation("OBX|1|TM|11778-8^EDD^LN||1030||||||F")
    assert obs["valueTime"] == "10:30:00"


def test_ed_value_becomes_a_document_reference_the_observation_derives_from():
    data = base64.b64encode(b"%PDF-1.4 test").decode()
    obs, result = observation(f"OBX|1|ED|11502-2^Lab report^LN||LAB^AP^PDF^Base64^{data}||||||F")
    doc = one(result, "DocumentReference")
    assert doc["content"][0]["attachment"]["contentType"] == "application/pdf"
    assert doc["content"][0]["attachment"]["data"] == data
    assert obs["derivedFrom"][0]["reference"] == entry_of(result, doc)["fullUrl"]


def test_ed_with_invalid_base64_is_reported():
    _, result = observation("OBX|1|ED|11502-2^Lab report^LN||LAB^AP^PDF^Base64^<not base64>||||||F")
    assert "data" not in one(result, "DocumentReference")["content"][0]["attachment"]
    assert [i.field for i in result.issues] == ["OBX-5.5"]


def test_nte_after_obx_is_the_observations_note():
    obs, _ = observation("OBX|1|ST|1-8^X^LN||pos||||||F", "NTE|1||Repeat \\T\\ confirm~second line")
    assert obs["note"] == [{"text": "Repeat & confirm\nsecond line"}]


def test_obx_without_code_is_skipped_and_reported_as_an_error():
    result = convert(oru(PID, OBR, "OBX|1|NM|||5||||||F", "OBX|2|ST|1-8^X^LN||pos||||||F"))
    assert len(resources(result, "Observation")) == 1
    [issue] = result.issues
    assert (issue.field, issue.severity, issue.target) == ("OBX-3", "error", "Observation.code")
    assert not result.ok


def test_report_text_without_code_is_the_reports_presented_form():
    result = convert(
        oru(PID, OBR, "OBX|1|TX|||Impression:||||||F", "OBX|2|TX|||No acute findings.||||||F")
    )
    assert resources(result, "Observation") == []
    [form] = one(result, "DiagnosticReport")["presentedForm"]
    assert base64.b64decode(form["data"]).decode() == "Impression:\nNo acute findings."
    assert {i.severity for i in result.issues} == {"information"}
    assert result.ok


def test_unknown_status_is_reported():
    obs, result = observation("OBX|1|ST|1-8^X^LN||pos||||||Q")
    assert obs["status"] == "unknown"
    assert [i.field for i in result.issues] == ["OBX-11"]


def test_observation_identity_comes_from_the_order_and_the_test():
    first = convert(oru(PID, OBR, "OBX|1|NM|2093-3^Chol^LN||212|mg/dL|||||P"))
    corrected = convert(oru(PID, OBR, "OBX|1|NM|2093-3^Chol^LN||210|mg/dL|||||C"))
    a, b = (entry_of(r, one(r, "Observation")) for r in (first, corrected))
    assert a["request"]["url"] == b["request"]["url"]
    assert a["request"]["method"] == "PUT"
    assert one(corrected, "Observation")["status"] == "corrected"


def test_same_test_twice_in_one_order_gives_two_observations():
    result = convert(oru(PID, OBR, "OBX|1|ST|1-8^X^LN||a||||||F", "OBX|2|ST|1-8^X^LN||b||||||F"))
    urls = {entry_of(result, o)["request"]["url"] for o in resources(result, "Observation")}
    assert len(urls) == 2


def test_repeated_value_becomes_one_component_per_repetition():
    message = oru(
        PID, "OBR|1|P-1|F-1|8867-4^Heart rate^LN", "OBX|1|NM|8867-4^Heart rate^LN||160~120"
    )
    result = convert(message)
    obs = one(result, "Observation")
    assert "valueQuantity" not in obs
    assert [c["valueQuantity"]["value"] for c in obs["component"]] == [160, 120]
    assert all(c["code"] == obs["code"] for c in obs["component"])
    back = hl7v2.parse(to_v2(result.bundle, "ORU^R01", control_id="RT"))
    assert [obx[5] for obx in back.all("OBX")] == ["160~120"]  # one OBX, two repetitions
