"""The Mapping page and its API: the built-in map's table, field rules saved (audited, with the
diff) or refused naming the rule and part, previews on a sample, and who may do what."""

from __future__ import annotations

import pytest
from django.test import Client

from channels_app import drafts
from channels_app.models import ChannelSample, Message
from console.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

CAPS = {
    "name": "caps",
    "source": "PID-5(1).1",
    "target": "Patient.name[0].family",
    "transforms": ["upper"],
}


@pytest.fixture
def channel():
    channel = factories.channel(40811)
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    return channel


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(viewer_user):
    return client_for(viewer_user)


def put(client, url, data):
    return client.put(url, data, content_type="application/json")


def post(client, url, data):
    return client.post(url, data, content_type="application/json")


# ---------------------------------------------------------------------------------------- API


def test_the_api_reads_and_writes_the_mapping_with_an_audited_diff(analyst, channel):
    url = f"/api/v1/channels/{channel.pk}/mapping/"
    assert analyst.get(url).json() == {"rules": [], "tables": {}}
    mapping = {"rules": [CAPS], "tables": {"sites": {"A": "Alpha"}}}
    answer = put(analyst, url, mapping)
    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in mapping} == mapping  # as the draft now has it
    assert answer["Location"] == answer.json()["draft"]["url"]
    channel.refresh_from_db()
    assert channel.mapping == {}  # what runs changes when the draft is published
    assert analyst.get(url).json() == {"rules": [], "tables": {}}
    event = AuditEvent.objects.get(action="channel.draft_saved", target=f"channel:{channel.pk}")
    assert event.detail["changes"]["mapping.tables.sites.A"] == [None, "Alpha"]
    published = put(analyst, f"{url}?publish=true&note=caps", mapping)
    assert published.status_code == 200 and published.json()["version"] == 1
    assert published.json()["draft"] is None
    assert analyst.get(url).json() == mapping
    assert channel.versions.get(number=1).note == "caps"


def test_a_rule_that_does_not_compile_is_refused_naming_rule_and_part(analyst, channel):
    bad = {"rules": [CAPS, {"name": "oops", "source": "PID-8", "target": "Patient.gendre"}]}
    answer = put(analyst, f"/api/v1/channels/{channel.pk}/mapping/", bad)
    assert answer.status_code == 400
    body = answer.json()
    assert body["rule"] == 1 and body["part"] == "target"
    assert "rule #2 ('oops'), target 'Patient.gendre'" in body["mapping"][0]
    channel.refresh_from_db()
    assert channel.mapping == {} and not AuditEvent.objects.filter(action="channel.draft_saved")


def test_the_channel_resource_checks_its_mapping_too(analyst, channel):
    answer = analyst.patch(
        f"/api/v1/channels/{channel.pk}/",
        {"mapping": {"rules": [{"target": "Patient.nope"}]}},
        content_type="application/json",
    )
    assert answer.status_code == 400 and "rule #1" in answer.json()["mapping"][0]


def test_viewers_read_the_mapping_and_may_not_change_it(viewer, channel):
    url = f"/api/v1/channels/{channel.pk}/mapping/"
    assert viewer.get(url).status_code == 200
    assert put(viewer, url, {"rules": [CAPS]}).status_code == 403
    channel.refresh_from_db()
    assert channel.mapping == {}


def test_operators_may_not_change_the_mapping(operator_user, channel):
    operator = client_for(operator_user)
    assert put(operator, f"/api/v1/channels/{channel.pk}/mapping/", {}).status_code == 403


# --------------------------------------------------------------------------------------- page


def test_the_page_shows_the_built_in_map_of_a_received_type(viewer, channel):
    Message.objects.create(channel=channel, raw=b"x", message_type="ORU^R01^ORU_R01")
    page = viewer.get(f"/channels/{channel.pk}/mapping/").content.decode()
    assert "Built-in map" in page and 'value="ORU^R01" selected' in page
    assert "<code>OBX-5</code>" in page and "Observation.value" in page
    assert "save-mapping" not in page  # a viewer reads the rules, no editor


def test_the_page_shows_the_resource_each_message_type_makes_of_a_segment(viewer, channel):
    def page(message_type):
        url = f"/channels/{channel.pk}/mapping/?type={message_type}"
        return viewer.get(url).content.decode()

    order, result = page("ORM^O01"), page("ORU^R01")
    assert 'data-segment="OBR" data-resource="ServiceRequest"' in order
    assert 'data-resource="DiagnosticReport"' not in order
    assert 'data-segment="OBR" data-resource="DiagnosticReport"' in result
    assert "<code>OBR-25</code>" in result and "DiagnosticReport.status" in result
    assert 'id="builtin-unlisted"' not in page("SIU^S12")  # every segment it reads is listed
    admit = page("ADT^A01")  # PDA and ACC rows, proven on hand-made samples
    assert 'data-segment="PDA" data-resource="Observation"' in admit
    assert "<code>ACC-8</code>" in admit and 'id="builtin-unlisted"' not in admit
    # a guarantor who is the patient, and the Encounter's diagnoses from DG1
    assert 'data-segment="GT1" data-resource="Patient"' in admit
    assert 'data-segment="DG1" data-resource="Encounter"' in admit
    assert "<code>PV1-50</code>" in admit and "<code>IN1-22</code>" in admit
    assert 'data-segment="BLG" data-resource="Account"' in page("OML^O21")
    administration = page("RAS^O17")
    assert 'data-segment="RXA" data-resource="MedicationAdministration"' in administration
    assert 'data-segment="RXR" data-resource="MedicationAdministration"' in administration


def test_any_registered_type_can_be_chosen(viewer, channel):
    page = viewer.get(f"/channels/{channel.pk}/mapping/?type=ADT^A01").content.decode()
    assert "<code>PID-3</code>" in page and "Patient.identifier" in page
    page = viewer.get(f"/channels/{channel.pk}/mapping/?type=ZZZ^Z01").content.decode()
    assert "ZZZ^Z01 has no built-in map" in page


def test_analysts_get_the_editor_with_the_channels_samples(analyst, channel):
    ChannelSample.objects.create(channel=channel, name="kept adt", raw=factories.adt_a01().decode())
    page = analyst.get(f"/channels/{channel.pk}/mapping/").content.decode()
    assert "save-mapping" in page and "kept adt" in page and 'value="ADT^A01" selected' in page


def test_the_page_saves_rules_and_csv_tables_to_the_draft(analyst, channel):
    body = {"rules": [CAPS], "tables": {"sites": "code,value\nA,Alpha\n"}}
    answer = post(analyst, f"/channels/{channel.pk}/mapping/save/", body)
    assert answer.status_code == 200 and answer.json()["saved"] is True
    assert answer.json()["draft"] is True
    saved = {"rules": [CAPS], "tables": {"sites": {"A": "Alpha"}}}
    assert drafts.draft_of(channel)["mapping"] == saved
    channel.refresh_from_db()
    assert channel.mapping == {}  # what runs changes when the draft is published
    assert AuditEvent.objects.filter(action="channel.draft_saved").count() == 1
    drafts.publish_draft(channel)
    channel.refresh_from_db()
    assert channel.mapping == saved


def test_a_bad_csv_table_is_refused_naming_table_and_row(analyst, channel):
    body = {"rules": [], "tables": {"sites": "A,Alpha,extra\n"}}
    answer = post(analyst, f"/channels/{channel.pk}/mapping/save/", body)
    assert answer.status_code == 400
    assert answer.json() == {
        "detail": "table 'sites': row 1: expected 2 columns (code,value), found 3",
        "rule": None,
        "part": "tables.sites",
    }


def test_the_preview_applies_unsaved_rules_and_places_issues_on_their_rule(analyst, channel):
    lookup = {
        "name": "sex",
        "source": "PID-8",
        "target": "Patient.gender",
        "transforms": [{"op": "lookup", "table": "sex"}],
    }
    body = {
        "rules": [CAPS, lookup],
        "tables": {"sex": "M,male\n"},
        "raw": factories.adt_a01(family="doe").decode().replace("\r", "\n"),
    }
    answer = post(analyst, f"/channels/{channel.pk}/mapping/preview/", body).json()
    patient = next(
        e["resource"]
        for e in answer["bundle"]["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    assert patient["name"][0]["family"] == "DOE"
    assert [i["rule"] for i in answer["issues"] if i.get("rule")] == ["rule #2 ('sex')"]
    assert 'data-path="PID-5(1).1"' in answer["tree_html"]
    channel.refresh_from_db()
    assert channel.mapping == {} and not Message.objects.filter(channel=channel).exists()


def test_the_preview_refuses_a_rule_that_does_not_compile(analyst, channel):
    body = {
        "rules": [{"source": "PID-8", "target": "Patient.gender", "transforms": ["shout"]}],
        "raw": "MSH|^~\\&|A",
    }
    answer = post(analyst, f"/channels/{channel.pk}/mapping/preview/", body)
    assert answer.status_code == 400
    assert answer.json()["rule"] == 0 and answer.json()["part"] == "transforms[0]"


def test_a_stored_mapping_that_no_longer_compiles_still_shows(viewer, channel):
    broken = {"rules": [{"name": "old", "target": "Patient.nope"}], "tables": {}}
    type(channel).objects.filter(pk=channel.pk).update(mapping=broken)
    page = viewer.get(f"/channels/{channel.pk}/mapping/")
    assert page.status_code == 200 and "Patient.nope" in page.content.decode()
    assert viewer.get(f"/api/v1/channels/{channel.pk}/mapping/").json() == broken
