"""convert(): the Bundle header (MSH), determinism, idempotent requests, unsupported types."""

from __future__ import annotations

import json

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import ConversionResult, MappingError, UnsupportedMessageType, convert

from .conftest import PID, PV1, adt, message


def test_bundle_is_a_transaction_identified_by_msh10_and_timestamped_by_msh7():
    result = convert(adt("A01", PID, PV1))
    assert isinstance(result, ConversionResult)
    bundle = result.bundle
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    assert bundle["identifier"] == {"system": "urn:id:REG", "value": "CTRL-A01"}
    assert bundle["timestamp"] == "2024-03-01T10:15:00+01:00"
    assert result.resource_types == ["Patient", "Practitioner", "Location", "Encounter"]


def test_same_input_same_bundle():
    a = convert(adt("A01", PID, PV1)).bundle
    b = convert(adt("A01", PID, PV1)).bundle
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_every_entry_is_a_conditional_request_and_fullurls_are_uuids():
    bundle = convert(adt("A01", PID, PV1)).bundle
    for entry in bundle["entry"]:
        assert entry["fullUrl"].startswith("urn:uuid:")
        request = entry["request"]
        if request["method"] == "PUT":
            assert request["url"].startswith(entry["resource"]["resourceType"] + "?identifier=")
        else:
            assert request["method"] == "POST"
            assert request["ifNoneExist"].startswith("identifier=")


def test_references_point_at_entries_of_the_bundle():
    bundle = convert(adt("A01", PID, PV1)).bundle
    urls = {e["fullUrl"] for e in bundle["entry"]}
    text = json.dumps(bundle)
    for chunk in text.split('"reference": "')[1:]:
        assert chunk.split('"', 1)[0] in urls


def test_msh7_without_zone_uses_the_default_and_says_so():
    msh = "MSH|^~\\&|REG|FAC|EHR|HUB|202403011015||ADT^A01|C1|P|2.5.1"
    result = convert(message(msh, PID))
    assert result.bundle["timestamp"] == "2024-03-01T10:15:00+00:00"
    info = [i for i in result.issues if i.field == "MSH-7"]
    assert info and info[0].severity == "information"
    assert convert(message(msh, PID), default_tz="-05:00").bundle["timestamp"].endswith("-05:00")


def test_times_without_zone_take_the_zone_of_msh7():
    pv1 = PV1.replace("20240301090000+0100", "20240301090000")
    result = convert(adt("A01", PID, pv1))
    enc = next(
        e["resource"]
        for e in result.bundle["entry"]
        if e["resource"]["resourceType"] == "Encounter"
    )
    assert enc["period"]["start"] == "2024-03-01T09:00:00+01:00"


def test_empty_msh7_and_msh10_are_reported_and_ids_stay_stable():
    msh = "MSH|^~\\&|REG|FAC|EHR|HUB|||ADT^A01||P|2.5.1"
    result = convert(message(msh, PID))
    assert "timestamp" not in result.bundle and "identifier" not in result.bundle
    assert {i.field for i in result.issues} >= {"MSH-7", "MSH-10"}
    again = convert(message(msh, PID))
    assert [e["fullUrl"] for e in again.bundle["entry"]] == [
        e["fullUrl"] for e in result.bundle["entry"]
    ]


@pytest.mark.parametrize("msh9", ["MFN^M02", "ORF", "ADT^O01", "ZZZ^Z01"])
def test_unsupported_type_names_the_type(msh9):
    msh = f"MSH|^~\\&|A|B|C|D|20240301||{msh9}|1|P|2.5"
    with pytest.raises(UnsupportedMessageType) as err:
        convert(message(msh, PID))
    assert err.value.value == msh9
    assert msh9 in str(err.value)
    assert err.value.field == "MSH-9" and err.value.origin == "map"
    assert isinstance(err.value, MappingError) and err.value.permanent


def test_mapping_error_carries_its_place():
    with pytest.raises(MappingError) as err:
        convert(adt("A01"))
    issue = err.value.as_issue()
    assert (issue.segment, issue.target, issue.origin, issue.severity) == (
        "PID",
        "Patient",
        "sender",
        "error",
    )


def test_non_default_encoding_characters():
    text = "MSH^~|\\&^REG^FAC^EHR^HUB^20240301101500+0100^^ADT~A01^C9^P^2.5\rPID^1^^55~~~H~MR^^Doe~Jane"
    result = convert(hl7v2.parse(text))
    patient = result.bundle["entry"][0]["resource"]
    assert patient["identifier"][0]["value"] == "55"
    assert patient["name"][0] == {"family": "Doe", "given": ["Jane"]}
