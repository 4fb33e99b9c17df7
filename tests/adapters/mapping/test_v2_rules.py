"""Field rules after the built-in v2 map: values rewritten, conditional requests kept in step."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import convert
from adapters.mapping.field_rules import compile_rules
from adapters.mapping.v2_rules import apply_after_map
from tests import factories


def run(rules, raw=None, tables=None):
    message = hl7v2.parse(raw or factories.adt_a01(mrn="MRN77", family="doe"))
    bundle = convert(message).bundle
    after, issues = apply_after_map(compile_rules(rules, tables=tables), message, bundle)
    return bundle, after, issues


def entry(bundle, resource_type):
    return next(e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def test_a_rule_on_a_v2_field_rewrites_the_target_and_leaves_the_input_alone():
    before, after, issues = run(
        [
            {
                "name": "caps",
                "source": "PID-5(1).1",
                "target": "Patient.name[0].family",
                "transforms": ["trim", "upper"],
            }
        ]
    )
    assert entry(after, "Patient")["resource"]["name"][0]["family"] == "DOE"
    assert entry(before, "Patient")["resource"]["name"][0]["family"] == "doe"
    assert issues == []


def test_rewriting_the_identity_identifier_rewrites_the_conditional_update():
    before, after, _ = run(
        [
            {
                "source": "PID-3(1).1",
                "target": "Patient.identifier[0].value",
                "transforms": [{"op": "lookup", "table": "mrns"}],
            }
        ],
        tables={"mrns": {"MRN77": "NEW-77"}},
    )
    old = entry(before, "Patient")["request"]["url"]
    assert old.endswith("|MRN77")
    assert entry(after, "Patient")["request"] == {
        "method": "PUT",
        "url": old.replace("|MRN77", "|NEW-77"),
    }
    # the Encounter was not touched: its request is the same object
    assert entry(after, "Encounter") is entry(before, "Encounter")


def test_a_referenced_resource_keeps_its_if_none_exist_in_step():
    before, after, _ = run(
        [
            {
                "source": "PV1-7(1).1",
                "target": "Practitioner.identifier[0].value",
                "transforms": [{"op": "replace", "pattern": "^", "replacement": "X"}],
            }
        ]
    )
    request = entry(after, "Practitioner")["request"]
    assert request["method"] == "POST"
    value = entry(after, "Practitioner")["resource"]["identifier"][0]["value"]
    assert (
        value.startswith("X") and request["ifNoneExist"] == "identifier=|" + value
    )  # no system: "|value"
    assert entry(before, "Practitioner")["request"]["ifNoneExist"] != request["ifNoneExist"]


def test_a_rule_not_on_identifiers_leaves_requests_alone():
    before, after, _ = run(
        [{"source": "PID-8", "target": "Patient.gender", "transforms": ["lower"]}]
    )
    assert entry(after, "Patient")["request"] == entry(before, "Patient")["request"]


def test_a_lookup_miss_is_an_issue_naming_the_rule():
    _, _, issues = run(
        [
            {
                "name": "sex codes",
                "source": "PID-8",
                "target": "Patient.gender",
                "transforms": [{"op": "lookup", "table": "sex"}],
            }
        ],
        tables={"sex": {"M": "male"}},
    )
    assert len(issues) == 1
    assert issues[0].rule == "rule #1 ('sex codes')" and issues[0].source == "PID-8"
