"""Custom JSON mapped to FHIR R4 by an analyst's json_map: compiled up front with errors that
name the part, applied with %input, validated with the hub's validator. No database."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.codecs import custom_json
from adapters.codecs.custom_json import JsonMapError, MapFailed, compile_json_map, to_bundle
from adapters.mapping.field_rules import RuleError, compile_rules
from adapters.mapping.result import MappingError
from adapters.mapping.validation import validate_full

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.7"

MAP = {
    "resources": ["Patient", {"type": "Encounter", "when": "%input.visit.exists()"}],
    "tables": {"sex": {"M": "male", "F": "female"}},
    "rules": [
        {
            "name": "mrn",
            "source": "%input.patient.mrn",
            "target": "Patient.identifier[0].value",
            "required": True,
        },
        {
            "target": "Patient.identifier[0].system",
            "transforms": [{"op": "default", "value": MRN_SYSTEM}],
        },
        {"source": "%input.patient.last", "target": "Patient.name[0].family"},
        {"source": "%input.patient.first", "target": "Patient.name[0].given"},
        {
            "name": "dob",
            "source": "%input.patient.dob",
            "target": "Patient.birthDate",
            "transforms": [{"op": "date", "from": "%d/%m/%Y", "to": "fhir"}],
        },
        {
            "source": "%input.patient.sex",
            "target": "Patient.gender",
            "transforms": [{"op": "lookup", "table": "sex"}],
        },
        {"source": "%input.visit.number", "target": "Encounter.identifier[0].value"},
        {"source": "%input.visit.ward", "target": "Encounter.class.code"},
        {
            "source": "%input.visit.ward",
            "target": "Encounter.class.system",
            "transforms": [
                {"op": "default", "value": "http://terminology.hl7.org/CodeSystem/v3-ActCode"}
            ],
        },
        {"source": "%input.visit.status", "target": "Encounter.status"},
        {"source": "%fullUrl_Patient", "target": "Encounter.subject.reference"},
    ],
}

ORDER = {
    "orderId": "ORD-17",
    "patient": {"mrn": "M-100", "last": "Okafor", "first": ["Ada", "N"], "dob": "02/01/1980"},
    "visit": {"number": 4411, "ward": "IMP", "status": "in-progress"},
}


def resource(bundle: dict, rtype: str) -> dict:
    [found] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]
    return found


def entry(bundle: dict, rtype: str) -> dict:
    [found] = [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]
    return found


def test_rules_read_the_document_and_build_a_valid_transaction():
    result = to_bundle(ORDER, compile_json_map(MAP))
    bundle = result.bundle
    assert bundle["type"] == "transaction" and result.issues == []
    patient = resource(bundle, "Patient")
    assert patient["identifier"] == [{"value": "M-100", "system": MRN_SYSTEM}]
    assert patient["name"] == [{"family": "Okafor", "given": ["Ada", "N"]}]
    assert patient["birthDate"] == "1980-01-02"
    encounter = resource(bundle, "Encounter")
    assert encounter["identifier"] == [{"value": "4411"}]  # a JSON number, as FHIR's string
    assert encounter["status"] == "in-progress" and encounter["class"]["code"] == "IMP"
    assert encounter["subject"] == {"reference": entry(bundle, "Patient")["fullUrl"]}
    # Conditional update on the business identifier, as the v2 maps send it.
    assert entry(bundle, "Patient")["request"] == {
        "method": "PUT",
        "url": f"Patient?identifier={MRN_SYSTEM}|M-100",
    }
    validate_full(bundle)  # the reference validator agrees with the fast one


def test_ids_are_stable_for_the_same_document_and_differ_for_another():
    compiled = compile_json_map(MAP)
    first = to_bundle(ORDER, compiled).bundle
    again = to_bundle(copy.deepcopy(ORDER), compiled).bundle
    other = to_bundle({**ORDER, "orderId": "ORD-18"}, compiled).bundle
    urls = [e["fullUrl"] for e in first["entry"]]
    assert all(u.startswith("urn:uuid:") for u in urls) and len(set(urls)) == 2
    assert urls == [e["fullUrl"] for e in again["entry"]] and first["id"] == again["id"]
    assert urls != [e["fullUrl"] for e in other["entry"]]


def test_a_key_makes_the_ids_follow_the_business_key_not_the_content():
    compiled = compile_json_map({**MAP, "key": "%input.orderId"})
    first = to_bundle(ORDER, compiled).bundle
    changed = to_bundle({**ORDER, "visit": {**ORDER["visit"], "ward": "EMER"}}, compiled).bundle
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in changed["entry"]]


def test_a_resource_without_a_business_identifier_gets_a_stable_one_not_its_full_url():
    order = copy.deepcopy(ORDER)
    del order["visit"]["number"]
    bundle = to_bundle(order, compile_json_map(MAP)).bundle
    encounter = entry(bundle, "Encounter")
    [derived] = encounter["resource"]["identifier"]
    assert derived["system"] == "urn:ietf:rfc:3986" and derived["value"].startswith("urn:uuid:")
    assert derived["value"] != encounter["fullUrl"]  # a server rewriting fullUrls leaves it be
    assert to_bundle(order, compile_json_map(MAP)).bundle == bundle  # the same every time
    assert (
        encounter["request"]["url"] == f"Encounter?identifier=urn:ietf:rfc:3986|{derived['value']}"
    )


def test_a_resource_whose_when_is_false_is_left_out_and_requires_nothing():
    spec = copy.deepcopy(MAP)
    spec["rules"].append(
        {"source": "%input.visit.status", "target": "Encounter.status", "required": True}
    )
    compiled = compile_json_map(spec)
    result = to_bundle({"patient": ORDER["patient"]}, compiled)
    assert [e["resource"]["resourceType"] for e in result.bundle["entry"]] == ["Patient"]
    assert result.issues == []
    # With a visit, the Encounter is built and its required rule holds again.
    with pytest.raises(MapFailed, match="Encounter.status"):
        to_bundle({"patient": ORDER["patient"], "visit": {"ward": "IMP"}}, compiled)


def test_a_declared_resource_no_rule_wrote_is_left_out_with_an_issue():
    spec = {
        "resources": ["Patient", "Practitioner"],
        "rules": [
            {"source": "%input.patient.mrn", "target": "Patient.identifier[0].value"},
            {"source": "%input.doctor.last", "target": "Practitioner.name[0].family"},
        ],
    }
    result = to_bundle({"patient": {"mrn": "M-1"}}, compile_json_map(spec))
    assert [e["resource"]["resourceType"] for e in result.bundle["entry"]] == ["Patient"]
    [issue] = result.issues
    assert issue.target == "Practitioner" and "left out" in issue.reason
    assert issue.severity == "information"


def test_a_missing_required_value_is_a_blocking_issue_and_stops_the_message():
    order = copy.deepcopy(ORDER)
    del order["patient"]["mrn"]
    compiled = compile_json_map(MAP)
    unchecked = to_bundle(order, compiled, check=False)
    [issue] = unchecked.issues
    assert issue.field == "%input.patient.mrn" and issue.target == "Patient.identifier[0].value"
    assert "rule #1 ('mrn')" in issue.reason and "required value is empty or absent" in issue.reason
    with pytest.raises(MapFailed) as err:
        to_bundle(order, compiled)
    assert err.value.target == "Patient.identifier[0].value"
    assert "%input.patient.mrn" in str(err.value) and "rule #1 ('mrn')" in str(err.value)
    assert err.value.issues == unchecked.issues


def test_an_optional_value_that_cannot_be_read_is_an_issue_not_a_failure():
    order = copy.deepcopy(ORDER)
    order["patient"]["dob"] = "1980-01-02"  # not the %d/%m/%Y the map expects
    result = to_bundle(order, compile_json_map(MAP))
    assert "birthDate" not in resource(result.bundle, "Patient")
    [issue] = result.issues
    assert issue.target == "Patient.birthDate" and issue.value == "1980-01-02"
    assert "rule #5 ('dob')" in issue.reason and issue.origin == "sender"


def test_an_invalid_result_is_reported_with_its_path():
    order = copy.deepcopy(ORDER)
    order["visit"]["status"] = "wandering"  # not an Encounter.status code
    bundle = to_bundle(order, compile_json_map(MAP), check=False).bundle
    assert resource(bundle, "Encounter")["status"] == "wandering"
    missing = copy.deepcopy(ORDER)
    del missing["visit"]["status"]
    with pytest.raises(MappingError) as err:
        to_bundle(missing, compile_json_map(MAP))
    assert not isinstance(err.value, MapFailed)  # the validator's, not the rules'
    assert err.value.target == "Encounter.status"
    assert "'status' is required in Encounter" in str(err.value)


def test_nothing_to_map_fails_instead_of_sending_an_empty_bundle():
    spec = {**MAP, "rules": [r for r in MAP["rules"] if not r.get("required")]}
    spec["rules"] = [r for r in spec["rules"] if "source" in r and "fullUrl" not in r["source"]]
    with pytest.raises(MapFailed, match="no rule found a value"):
        to_bundle({"unrelated": True}, compile_json_map(spec))


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        (
            {"rules": [{"source": "%input.dob.", "target": "Patient.birthDate"}]},
            "rules[0].source",
            "FHIRPath syntax error",
        ),
        (
            {"rules": [{"name": "sex", "source": "%input.sex", "target": "Patient.gendr"}]},
            "rules[0].target",
            "did you mean",
        ),
        (
            {"rules": [{"source": "%inptu.x", "target": "Patient.gender"}]},
            "rules[0].source",
            "unknown variable %inptu",
        ),
        (
            {"rules": [{"source": "%input.x", "target": "Observation.status"}]},
            "rules[0].target",
            "not among the declared resources",
        ),
        (
            {
                "rules": [
                    {
                        "source": "%input.x",
                        "target": "Patient.gender",
                        "transforms": [{"op": "lookup", "table": "nope"}],
                    }
                ]
            },
            "rules[0].transforms[0].table",
            "no table named 'nope'",
        ),
        ({"resources": ["Patient", "Encountr"]}, "resources[1]", "did you mean Encounter"),
        ({"resources": ["Patient", "Patient"]}, "resources[1]", "declared twice"),
        ({"resources": []}, "resources", "is required"),
        (
            {"resources": ["Patient", {"type": "Encounter", "when": "%input.("}]},
            "resources[1].when",
            "FHIRPath syntax error",
        ),
        (
            {"resources": ["Patient", {"type": "Encounter", "if": "true"}]},
            "resources[1].if",
            "unknown key",
        ),
        ({"rules": []}, "rules", "is empty"),
        ({"key": "%input.id."}, "key", "FHIRPath syntax error"),
        ({"extra": 1}, "extra", "unknown key"),
    ],
)
def test_a_bad_map_is_refused_naming_the_part(change, where, says):
    with pytest.raises(JsonMapError) as err:
        compile_json_map({**MAP, **change})
    assert err.value.where == where
    assert str(err.value).startswith(f"json_map.{where}: ") and says in str(err.value)


def test_a_bad_rule_is_a_rule_error_naming_the_rule_and_its_part():
    rules = copy.deepcopy(MAP["rules"])
    rules[4]["transforms"] = [{"op": "date", "from": "%d/%m/%Y"}]  # 'to' is missing
    with pytest.raises(RuleError) as err:
        compile_json_map({**MAP, "rules": rules})
    assert err.value.index == 4 and err.value.name == "dob"
    assert "rule #5 ('dob'), transforms[0]" in str(err.value)


def test_v2_rules_do_not_know_input():
    with pytest.raises(RuleError, match="unknown variable %input"):
        compile_rules([{"source": "%input.mrn", "target": "Patient.gender"}])


def test_json_numbers_keep_their_type_in_the_bundle():
    spec = {
        "resources": ["Observation"],
        "rules": [
            {"target": "Observation.status", "transforms": [{"op": "default", "value": "final"}]},
            {"source": "%input.test", "target": "Observation.code.text"},
            {"source": "%input.result", "target": "Observation.valueQuantity"},
        ],
    }
    document = {"test": "Hgb", "result": {"value": 13.5, "unit": "g/dL"}}
    bundle = to_bundle(document, compile_json_map(spec)).bundle
    quantity = resource(bundle, "Observation")["valueQuantity"]
    assert quantity == {"value": 13.5, "unit": "g/dL"} and type(quantity["value"]) is float
    # A resource with an identifier element but no business one: the derived one is added.
    assert entry(bundle, "Observation")["request"]["method"] == "PUT"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"<order/>", "not JSON: Expecting value"),
        (b'{"a": 1', "not JSON"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": 1e400}', "too large a number"),
        (b'"just text"', "must be an object or an array"),
        (b"\xff\xfe{", "not JSON"),
    ],
)
def test_a_body_that_is_not_a_json_document_says_why(raw, says):
    with pytest.raises(custom_json.NotJson, match=says):
        custom_json.read(raw)


def test_the_document_is_read_as_sent():
    assert custom_json.read(b'{"patient": {"mrn": "M-1"}}') == {"patient": {"mrn": "M-1"}}
    assert custom_json.read(b"[1, 2]") == [1, 2]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "patient",
                    "mrn",
                    "last",
                    "first",
                    "dob",
                    "sex",
                    "visit",
                    "number",
                    "ward",
                    "status",
                    "orderId",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["orderId", "patient", "visit"]), JSON_VALUES))
def test_any_document_gives_a_bundle_or_a_mapping_error_never_a_crash(document):
    compiled = compile_json_map(MAP)
    unchecked = to_bundle(document, compiled, check=False)
    json.dumps(unchecked.bundle, allow_nan=False)  # storable as it is
    try:
        to_bundle(document, compiled)
    except MappingError as exc:
        assert exc.target  # always says where
