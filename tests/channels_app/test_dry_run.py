"""The dry run over the corpus: what each destination would get, with nothing stored or sent."""

from __future__ import annotations

import json

import pytest

from channels_app import samples
from channels_app.dry_run import dry_run
from channels_app.models import ChannelSample, Delivery, Destination, Message
from tests import factories

pytestmark = pytest.mark.django_db

FINAL_REPORTS = "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()"


@pytest.fixture
def channel(fhir_sink, tmp_path):
    channel = factories.channel(40311)
    factories.fhir_destination(channel, fhir_sink.url)
    Destination.objects.create(
        channel=channel,
        name="lab files",
        transport=Destination.Transport.FILE,
        config={"directory": str(tmp_path), "filename": "{name}-{date:%Y}.{ext}"},
        route_when=FINAL_REPORTS,
    )
    Destination.objects.create(
        channel=channel,
        name="mrn hook",
        transport=Destination.Transport.WEBHOOK,
        config={
            "url": "http://127.0.0.1:9/hook",
            "body": "template",
            "template": {"mrn": "=entry.resource.ofType(Patient).identifier.value"},
        },
        route_when="%messageCode = 'ADT'",
    )
    return channel


def corpus_messages(corpus, *folders):
    return sorted(p for f in folders for p in (corpus / f).glob("*.hl7"))


def test_corpus_messages_are_tried_without_storing_or_sending(channel, corpus, fhir_sink, tmp_path):
    tried = 0
    for path in corpus_messages(corpus, "adt", "oru"):
        result = dry_run(channel, path.read_bytes())
        tried += 1
        if result.error:
            assert result.error["stage"] in ("parse", "map", "route"), path.name
            continue
        assert result.parse_tree[0]["name"] == "MSH", path.name
        assert result.bundle["resourceType"] == "Bundle", path.name
        assert {r["destination_name"] for r in result.routing} == {
            "FHIR sink",
            "lab files",
            "mrn hook",
        }
        assert "FHIR sink" in result.outputs, path.name
    assert tried > 20
    assert not Message.objects.exists() and not Delivery.objects.exists()
    assert fhir_sink.requests == [] and list(tmp_path.iterdir()) == []


def test_each_destination_gets_its_own_encoding(channel):
    result = dry_run(channel, factories.adt_a01("DRY1", mrn="MRN-77"))
    assert result.error is None
    routed = {r["destination_name"]: r["routed"] for r in result.routing}
    assert routed == {"FHIR sink": True, "lab files": False, "mrn hook": True}
    fhir = result.outputs["FHIR sink"]
    assert json.loads(fhir["body"]) == result.bundle
    assert fhir["content_type"] == "application/fhir+json"
    assert json.loads(result.outputs["mrn hook"]["body"]) == {"mrn": "MRN-77"}
    assert "lab files" not in result.outputs


def test_a_file_destination_shows_the_file_name(channel):
    result = dry_run(channel, factories.oru_r01("DRY2", status="F"))
    output = result.outputs["lab files"]
    assert output["target"].endswith("-2000.json")
    assert json.loads(output["body"])["resourceType"] == "Bundle"


def test_the_parse_tree_names_each_component_by_its_path(channel):
    tree = dry_run(channel, factories.adt_a01(mrn="MRN-9")).parse_tree
    pid = next(s for s in tree if s["name"] == "PID")
    pid3 = next(f for f in pid["fields"] if f["path"] == "PID-3")
    first = pid3["repetitions"][0]["components"][0]
    assert first == {"path": "PID-3(1).1", "value": "MRN-9", "subcomponents": []}


def test_an_unreadable_message_answers_the_codec_error_with_its_place(channel, corpus):
    bad = (corpus / "malformed" / "cdc_bad_encoding_chars_msh2.hl7").read_bytes()
    result = dry_run(channel, bad)
    assert result.error["stage"] == "parse"
    assert result.error["where"].startswith("MSH")
    assert result.bundle is None and result.outputs == {}
    assert not Message.objects.exists()


def test_a_rule_failing_on_the_message_is_shown_at_stage_route(channel):
    Destination.objects.filter(name="mrn hook").update(
        route_when="entry.resource.ofType(Observation).status"
    )
    result = dry_run(channel, factories.oru_r01(n_obx=3))
    assert result.error["stage"] == "route" and "mrn hook" in result.error["where"]


def test_the_suite_diff_reads_a_routing_flip_as_one_change(channel):
    sample = ChannelSample.objects.create(
        channel=channel, name="adt", raw=factories.adt_a01("DIFF-1").decode()
    )
    samples.accept(sample)
    assert samples.check_sample(sample).status == samples.PASSED
    Destination.objects.filter(name="mrn hook").update(route_when="%messageCode = 'ORU'")
    outcome = samples.check_sample(sample)
    assert outcome.status == samples.CHANGED
    removed = [line for line in outcome.diff.splitlines() if line.startswith("-  ")]
    assert any('"mrn hook": "sent: application/json' in line for line in removed)
    assert any('"mrn hook": "not sent"' in line for line in outcome.diff.splitlines())
    assert len(outcome.diff.splitlines()) < 40


def test_a_sample_that_no_longer_reads_has_failed(channel):
    sample = ChannelSample.objects.create(
        channel=channel, name="adt", raw=factories.adt_a01("FAIL-1").decode()
    )
    samples.accept(sample)
    sample.raw = "MSH|^~\\&|A\rPID"
    sample.save()
    assert samples.check_sample(sample).status == samples.FAILED


def test_a_custom_json_channel_is_tried_with_its_map(fhir_sink):
    from tests.channels_app.test_http_inbound_json import JSON_MAP, order

    channel = factories.channel(0, source_config={"inbound": "json", "json_map": JSON_MAP})
    factories.fhir_destination(channel, fhir_sink.url)
    result = dry_run(channel, json.dumps(order("ORD-DRY")))
    assert result.content_type == "application/vnd.hl7hub.custom+json"
    assert result.error is None and result.parse_tree is None
    types = [e["resource"]["resourceType"] for e in result.bundle["entry"]]
    assert types == ["Patient", "Encounter"]
    assert "M-5150" in result.outputs["FHIR sink"]["body"]


def test_fhir_json_is_taken_as_the_canonical_bundle(channel):
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "P-1"}]}
    result = dry_run(channel, json.dumps(patient))
    assert result.content_type == "application/fhir+json" and result.error is None
    assert result.bundle["entry"][0]["resource"] == patient
    assert result.routing and "FHIR sink" in result.outputs
    assert not Message.objects.exists()


def test_json_that_is_not_fhir_is_refused_at_validate(channel):
    result = dry_run(channel, '{"hello": "world"}')
    assert result.error["stage"] == "validate" and "resourceType" in result.error["detail"]


def test_a_v2_receiver_is_shown_the_message_built_back(channel):
    Destination.objects.create(
        channel=channel,
        name="old EHR",
        transport=Destination.Transport.MLLP,
        config={"host": "127.0.0.1", "port": 9, "payload": "rebuilt", "message_type": "ADT^A08"},
    )
    result = dry_run(channel, factories.adt_a01("DRY9", mrn="MRN-5150"))
    output = result.outputs["old EHR"]
    segments = output["body"].split("\r")
    assert segments[0].split("|")[8].startswith("ADT^A08") and segments[0].split("|")[9] == "DRY9"
    assert any(s.startswith("PID|") and "MRN-5150" in s for s in segments)
    assert output["content_type"] == "x-application/hl7-v2+er7"
