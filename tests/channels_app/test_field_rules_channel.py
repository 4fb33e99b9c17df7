"""A channel's field rules on HL7 v2: refused at save naming rule and part, applied in the process
stage and the dry run, compiled once per mapping, lookup tables from CSV."""

from __future__ import annotations

import pytest

from channels_app import field_rules
from channels_app.dry_run import dry_run
from channels_app.models import Message
from channels_app.pipeline.process import process_messages
from tests import factories

pytestmark = pytest.mark.django_db

CAPS = {
    "name": "caps",
    "source": "PID-5(1).1",
    "target": "Patient.name[0].family",
    "transforms": ["upper"],
}


def patient(bundle):
    return next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )


def test_a_rule_that_does_not_compile_is_refused_naming_rule_and_part():
    with pytest.raises(field_rules.MappingRefused) as refused:
        field_rules.checked_mapping(
            {"rules": [CAPS, {"name": "bad", "source": "PID-8", "target": "Patient.gendre"}]}
        )
    assert refused.value.index == 1 and refused.value.part == "target"
    assert "rule #2 ('bad')" in str(refused.value)
    with pytest.raises(field_rules.MappingRefused) as refused:
        field_rules.checked_mapping(
            {
                "rules": [
                    {
                        "source": "PID-8",
                        "target": "Patient.gender",
                        "transforms": [{"op": "lookup", "table": "x"}],
                    }
                ]
            }
        )
    assert refused.value.part == "transforms[0].table"
    with pytest.raises(field_rules.MappingRefused, match="unknown key 'rule'"):
        field_rules.checked_mapping({"rule": []})


def test_the_process_stage_applies_the_channel_rules(db):
    channel = factories.channel(40711, mapping={"rules": [CAPS], "tables": {}})
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    message = Message.objects.create(
        channel=channel,
        raw=factories.adt_a01(family="doe"),
        content_type="x-application/hl7-v2+er7",
    )
    process_messages([message.pk])
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED
    assert patient(message.canonical_json)["name"][0]["family"] == "DOE"


def test_a_required_rule_without_its_value_stops_the_message(db):
    rule = {
        "name": "needs ssn",
        "source": "PID-19",
        "target": "Patient.identifier[+].value",
        "required": True,
    }
    channel = factories.channel(40712, mapping={"rules": [rule], "tables": {}})
    message = Message.objects.create(
        channel=channel, raw=factories.adt_a01(), content_type="x-application/hl7-v2+er7"
    )
    process_messages([message.pk])
    message.refresh_from_db()
    assert message.status == Message.Status.ERROR and message.error_stage == "map"
    assert "needs ssn" in message.error_detail and "PID-19" in message.error_path


def test_the_dry_run_shows_saved_rules_and_previews_unsaved_ones():
    channel = factories.channel(40713, mapping={"rules": [CAPS], "tables": {}})
    raw = factories.adt_a01(family="doe")
    assert patient(dry_run(channel, raw).bundle)["name"][0]["family"] == "DOE"
    draft = field_rules.checked_mapping(
        {
            "rules": [
                {
                    "name": "sex",
                    "source": "PID-8",
                    "target": "Patient.gender",
                    "transforms": [{"op": "lookup", "table": "sex"}],
                }
            ],
            "tables": {"sex": {"M": "male"}},
        }
    )
    result = dry_run(channel, raw, mapping=draft)
    assert patient(result.bundle)["name"][0]["family"] == "doe"  # the saved rule is replaced
    [issue] = [i for i in result.issues if i.get("rule")]
    assert issue["rule"] == "rule #1 ('sex')" and issue["field"] == "PID-8"
    assert not Message.objects.exists()


def test_a_mapping_is_compiled_once_per_content():
    mapping = {"rules": [CAPS], "tables": {}}
    assert field_rules.compiled(mapping) is field_rules.compiled({"tables": {}, "rules": [CAPS]})
    assert field_rules.compiled({}) is field_rules.EMPTY


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("code,value\nM,male\nF,female\n", {"M": "male", "F": "female"}),
        ("\ufeffM,male\r\n\r\nF, female\r\n", {"M": "male", "F": "female"}),
        ('"A,1",one\n', {"A,1": "one"}),
    ],
)
def test_a_csv_becomes_a_lookup_table(text, table):
    assert field_rules.table_from_csv(text) == table


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no rows"),
        ("code,value\nM,male,extra\n", "row 2: expected 2 columns"),
        ("M,male\n,female\n", "row 2: the code is empty"),
        ("M,male\nM,man\n", "row 2: code 'M' is listed twice"),
    ],
)
def test_a_bad_csv_says_which_row(text, error):
    with pytest.raises(field_rules.BadTable, match=error):
        field_rules.table_from_csv(text)


def test_a_stored_mapping_that_no_longer_compiles_stops_its_messages_with_the_reason(db):
    channel = factories.channel(40714)
    type(channel).objects.filter(pk=channel.pk).update(
        mapping={"rules": [{"name": "old", "target": "Patient.nope"}]}
    )
    message = Message.objects.create(
        channel=channel, raw=factories.adt_a01(), content_type="x-application/hl7-v2+er7"
    )
    process_messages([message.pk])
    message.refresh_from_db()
    assert message.status == Message.Status.ERROR and message.error_path == "field rules"
    assert "rule #1 ('old'), target" in message.error_detail


def test_field_rules_cost_no_query_per_message(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    channel = factories.channel(40715, mapping={"rules": [CAPS], "tables": {}})

    def queries_for(n: int, batch: str) -> int:
        ids = [
            Message.objects.create(
                channel=channel,
                raw=factories.adt_a01(f"{batch}-{i}", family="doe"),
                content_type="x-application/hl7-v2+er7",
            ).pk
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as captured:
            process_messages(ids)
        return len(captured.captured_queries)

    assert queries_for(1, "ONE") == queries_for(5, "FIVE")
    assert all(
        patient(m.canonical_json)["name"][0]["family"] == "DOE"
        for m in Message.objects.filter(channel=channel)
    )
