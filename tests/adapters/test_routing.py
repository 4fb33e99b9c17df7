"""Routing rules alone (no Django): compiling, evaluating on a Bundle and the v2 header,
and the decision a channel's rules make for one message."""

from __future__ import annotations

import copy

import pytest

from adapters import mapping
from adapters.codecs import hl7v2
from adapters.routing import (
    RuleError,
    compile_rule,
    compile_table,
    header_variables,
)

FINAL_REPORT = "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()"
HEADER = header_variables("ORU^R01", "LAB", "CITYLAB")


def oru(status: str) -> dict:
    text = (
        "MSH|^~\\&|LAB|CITYLAB|HUB|HUB|20240301101500||ORU^R01|C1|P|2.5.1\r"
        "PID|1||123^^^HOSP^MR||Doe^John||19800102|M\r"
        f"OBR|1||F100|718-7^Hgb^LN|||20240301090000|||||||||||||||20240301100000||LAB|{status}\r"
        f"OBX|1|NM|718-7^Hgb^LN||13.5|g/dL|||||{status}\r"
        f"OBX|2|NM|4544-3^Hct^LN||41|%|||||{status}\r"
    )
    return mapping.convert(hl7v2.parse(text.encode())).bundle


@pytest.fixture(scope="module")
def final() -> dict:
    return oru("F")


@pytest.fixture(scope="module")
def preliminary() -> dict:
    return oru("P")


def test_a_rule_on_the_bundle_tells_final_from_preliminary(final, preliminary):
    rule = compile_rule(FINAL_REPORT)
    assert rule.holds(final, HEADER) is True
    assert rule.holds(preliminary, HEADER) is False


def test_evaluating_leaves_the_bundle_as_it_was(final):
    before = copy.deepcopy(final)
    compile_rule(FINAL_REPORT).holds(final, HEADER)
    assert final == before


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("%messageType = 'ORU^R01'", True),
        ("%messageCode = 'ORU' and %triggerEvent = 'R01'", True),
        ("%messageCode = 'ADT'", False),
        ("%sendingApplication = 'LAB'", True),
        ("%sendingFacility.startsWith('CITY')", True),
        ("%sendingFacility = 'OTHER'", False),
    ],
)
def test_the_v2_header_is_there_as_variables(final, expression, expected):
    assert compile_rule(expression).holds(final, HEADER) is expected


def test_header_variables_split_the_message_type():
    assert header_variables("ADT^A01", "REG", "FAC") == {
        "messageType": "ADT^A01",
        "messageCode": "ADT",
        "triggerEvent": "A01",
        "sendingApplication": "REG",
        "sendingFacility": "FAC",
    }
    assert header_variables("", "", "")["triggerEvent"] == ""


def test_a_collection_counts_as_a_boolean_the_fhirpath_way(final):
    assert compile_rule("entry.resource.ofType(Patient)").holds(final, HEADER) is True
    assert compile_rule("entry.resource.ofType(Device)").holds(final, HEADER) is False


def test_blank_means_always():
    assert compile_rule("") is None
    assert compile_rule("   ") is None


@pytest.mark.parametrize(
    ("expression", "position"),
    [
        ("entry.resource.", 16),
        ("entry.where(status = 'final'", 29),
        ("%messageType == 'ADT^A01'", 15),
    ],
)
def test_a_syntax_error_is_refused_with_the_parsers_position(expression, position):
    with pytest.raises(RuleError) as caught:
        compile_rule(expression)
    assert caught.value.position == position
    assert f"at character {position}" in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "named"),
    [("%messageTyp = 'ADT^A01'", "messageTyp"), ("entry.resource.frobnicate()", "frobnicate")],
)
def test_an_unknown_variable_or_function_is_refused_when_compiled(expression, named):
    with pytest.raises(RuleError, match=named):
        compile_rule(expression)


def test_a_rule_that_gives_several_values_fails_rather_than_guessing(final):
    rule = compile_rule("entry.resource.ofType(Observation).status")
    with pytest.raises(RuleError, match="gave 2 values"):
        rule.holds(final, HEADER)


def table(channel_filter: str = "", **rules: str):
    return compile_table(
        channel_filter, [(i, name, when) for i, (name, when) in enumerate(rules.items(), 1)]
    )


def test_each_destination_gets_a_decision_and_its_reason(preliminary):
    verdict = table(ehr="", registry=FINAL_REPORT).decide(preliminary, HEADER)
    assert verdict.error is None
    assert [d.as_dict() for d in verdict.decisions] == [
        {
            "destination": 1,
            "destination_name": "ehr",
            "routed": True,
            "reason": "no rule: always routed",
        },
        {
            "destination": 2,
            "destination_name": "registry",
            "routed": False,
            "reason": f"`{FINAL_REPORT}` evaluated false",
        },
    ]
    assert verdict.routed == (1,)


def test_a_channel_filter_that_refuses_routes_nowhere(final):
    verdict = table("%messageCode = 'ADT'", ehr="").decide(final, HEADER)
    assert verdict.routed == ()
    assert verdict.error is None
    assert verdict.decisions[0].reason == "channel filter `%messageCode = 'ADT'` evaluated false"


def test_a_channel_filter_that_passes_leaves_it_to_the_destinations(final):
    verdict = table("%messageCode = 'ORU'", ehr="", registry=FINAL_REPORT).decide(final, HEADER)
    assert verdict.routed == (1, 2)


def test_a_rule_failing_on_a_message_routes_nothing_and_names_itself(final):
    broken = "entry.resource.ofType(Observation).status"
    verdict = table(ehr="", registry=broken).decide(final, HEADER)
    assert verdict.routed == ()
    assert verdict.failed_rule == "registry"
    assert verdict.error.expression == broken
    ehr, registry = verdict.decisions
    assert "not sent, as another rule failed" in ehr.reason
    assert registry.reason.startswith(f"`{broken}` failed: gave 2 values")


def test_a_failing_channel_filter_is_an_error_too(final):
    verdict = table("entry.resource.ofType(Observation).status", ehr="").decide(final, HEADER)
    assert verdict.failed_rule == "channel filter"
    assert verdict.routed == ()


def test_a_table_with_a_bad_expression_is_refused():
    with pytest.raises(RuleError):
        table(ehr="entry.")
