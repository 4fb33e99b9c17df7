"""Routing rules in the console and the API: refused on save with the parser's position, audited
when saved, and each message's decision shown with its reason (page and API)."""

from __future__ import annotations

import json

import pytest

from channels_app import drafts
from channels_app.models import Destination, Message
from channels_app.pipeline.process import process_messages
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

FINAL_REPORT = "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()"
UNFINISHED = "entry.resource.ofType(DiagnosticReport).where(status = 'final'"


@pytest.fixture
def destination():
    channel = factories.channel(40411)
    return factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")


def processed(channel, control_id: str, status: str = "F") -> Message:
    """An ORU as ingest stores it, then through the pipeline's process step."""
    message = Message.objects.create(
        channel=channel,
        raw=factories.oru_r01(control_id, status=status, mrn="MRN-7781"),
        message_type="ORU^R01",
        control_id=control_id,
        sending_application="LAB",
        sending_facility="HOSP",
    )
    process_messages([message.pk])
    message.refresh_from_db()
    return message


# --- API ---------------------------------------------------------------------------------------


def test_api_refuses_a_rule_that_does_not_parse_naming_route_when_and_the_position(
    analyst_user, destination
):
    response = signed_in(analyst_user).patch(
        f"/api/v1/destinations/{destination.pk}/",
        {"route_when": UNFINISHED},
        content_type="application/json",
    )
    assert response.status_code == 400
    [error] = response.json()["route_when"]
    assert "at character 63" in error
    destination.refresh_from_db()
    assert destination.route_when == ""


def test_api_stores_a_rule_and_audits_it(analyst_user, destination):
    response = signed_in(analyst_user).patch(
        f"/api/v1/destinations/{destination.pk}/",
        {"route_when": f"  {FINAL_REPORT} "},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["route_when"] == FINAL_REPORT
    destination.refresh_from_db()
    assert destination.route_when == ""  # in the draft until it is published
    event = AuditEvent.objects.get(action="channel.draft_saved")
    path = f"destinations.{destination.name}.route_when"
    assert event.detail["changes"][path] == ["", FINAL_REPORT]
    published = signed_in(analyst_user).post(
        f"/api/v1/channels/{destination.channel_id}/draft/publish/", {"note": "final only"}
    )
    assert published.status_code == 201
    destination.refresh_from_db()
    assert destination.route_when == FINAL_REPORT


def test_api_refuses_an_unknown_function(analyst_user, destination):
    response = signed_in(analyst_user).patch(
        f"/api/v1/destinations/{destination.pk}/",
        {"route_when": "entry.resource.frobnicate()"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "frobnicate" in response.json()["route_when"][0]


def test_api_channel_filter_is_validated_the_same_way(analyst_user, destination):
    client = signed_in(analyst_user)
    url = f"/api/v1/channels/{destination.channel_id}/"
    refused = client.patch(url, {"route_filter": "%messageCode = "}, "application/json")
    assert refused.status_code == 400
    assert "at character" in refused.json()["route_filter"][0]
    accepted = client.patch(url, {"route_filter": "%messageCode = 'ORU'"}, "application/json")
    assert accepted.status_code == 200 and accepted.json()["route_filter"] == "%messageCode = 'ORU'"


def test_viewers_may_not_change_rules(viewer_user, destination):
    response = signed_in(viewer_user).patch(
        f"/api/v1/destinations/{destination.pk}/",
        {"route_when": FINAL_REPORT},
        content_type="application/json",
    )
    assert response.status_code == 403


def test_api_message_shows_its_routing(viewer_user, destination):
    Destination.objects.filter(pk=destination.pk).update(route_when=FINAL_REPORT)
    message = processed(destination.channel, "API-PRELIM", status="P")
    assert message.status == Message.Status.FILTERED
    shown = signed_in(viewer_user).get(f"/api/v1/messages/{message.pk}/").json()
    assert shown["routing"] == [
        {
            "destination": destination.pk,
            "destination_name": destination.name,
            "routed": False,
            "reason": f"`{FINAL_REPORT}` evaluated false",
        }
    ]
    listed = signed_in(viewer_user).get("/api/v1/messages/?status=FILTERED").json()
    assert [m["control_id"] for m in listed["results"]] == ["API-PRELIM"]


def test_api_masks_what_a_failing_rule_quotes_but_not_the_rule(viewer_user, destination):
    quoting = "entry.resource.ofType(Patient).identifier.value"
    Destination.objects.filter(pk=destination.pk).update(route_when=quoting)
    message = processed(destination.channel, "API-ERR")
    Message.objects.filter(pk=message.pk).update(
        routing=[{**message.routing[0], "reason": f"`{quoting}` failed: value 'MRN-7781' is odd"}]
    )
    shown = signed_in(viewer_user).get(f"/api/v1/messages/{message.pk}/").json()
    assert shown["routing"][0]["reason"].startswith(f"`{quoting}` failed: value '***'")
    assert "MRN-7781" not in json.dumps(shown)


# --- pages -------------------------------------------------------------------------------------


def form_data(destination: Destination, **changes) -> dict:
    fields = ["name", *Destination.POLICY]
    data = {name: getattr(destination, name) for name in fields}
    data = {k: "" if v is None else v for k, v in data.items()}
    data.update({"enabled": "on", "config-base_url": destination.config["base_url"]})
    data.update(changes)
    return data


def test_page_refuses_a_rule_that_does_not_parse_next_to_the_field(analyst_user, destination):
    response = signed_in(analyst_user).post(
        f"/destinations/{destination.pk}/edit/", form_data(destination, route_when=UNFINISHED)
    )
    assert response.status_code == 200
    html = response.content.decode()
    field = html.split('data-field="route_when"', 1)[1].split('data-field="', 1)[0]
    assert "is-invalid" in field and "at character 63" in field
    destination.refresh_from_db()
    assert destination.route_when == ""


def test_page_saves_a_rule_and_audits_it(analyst_user, destination):
    response = signed_in(analyst_user).post(
        f"/destinations/{destination.pk}/edit/", form_data(destination, route_when=FINAL_REPORT)
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="channel.draft_saved")
    path = f"destinations.{destination.name}.route_when"
    assert event.detail["changes"] == {path: ["", FINAL_REPORT]}
    drafts.publish_draft(destination.channel)
    destination.refresh_from_db()
    assert destination.route_when == FINAL_REPORT


def test_message_page_shows_each_decision_and_why(viewer_user, destination):
    factories.fhir_destination(
        destination.channel, "http://127.0.0.1:9/fhir", name="Finals", route_when=FINAL_REPORT
    )
    message = processed(destination.channel, "PAGE-PRELIM", status="P")
    assert message.status == Message.Status.PROCESSED
    html = signed_in(viewer_user).get(f"/messages/{message.pk}/").content.decode()
    routing = html.split('id="routing"', 1)[1].split("</table>", 1)[0]
    assert "no rule: always routed" in routing
    assert 'data-routed="false"' in routing
    quoted = FINAL_REPORT.replace("'", "&#x27;")
    assert f"<code>{quoted}</code> evaluated false" in routing and "Finals" in routing


def test_message_page_shows_a_failing_rule_at_stage_route(viewer_user, destination):
    broken = "entry.resource.ofType(Observation).status"
    Destination.objects.filter(pk=destination.pk).update(route_when=broken)
    message = processed(destination.channel, "PAGE-ERR")
    assert message.status == Message.Status.ERROR and message.error_stage == "route"
    html = signed_in(viewer_user).get(f"/messages/{message.pk}/").content.decode()
    assert "Stopped at the route stage" in html
    assert "gave 3 values" in html


def test_message_list_filters_filtered_messages(viewer_user, destination):
    Destination.objects.filter(pk=destination.pk).update(route_when=FINAL_REPORT)
    processed(destination.channel, "LIST-FINAL")
    processed(destination.channel, "LIST-PRELIM", status="P")
    html = signed_in(viewer_user).get("/messages/?status=FILTERED").content.decode()
    assert "LIST-PRELIM" in html and "LIST-FINAL" not in html
    because = html.split("data-filtered-because>", 1)[1].split("</div>", 1)[0]
    assert because == f"`{FINAL_REPORT}` evaluated false".replace("'", "&#x27;")


def test_a_version_records_the_rules_and_a_rollback_restores_them(destination):
    channel = destination.channel
    Destination.objects.filter(pk=destination.pk).update(route_when=FINAL_REPORT)
    channel.route_filter = "%messageCode = 'ORU'"
    channel.save()
    version = channel.publish()
    assert version.snapshot["route_filter"] == "%messageCode = 'ORU'"
    assert version.snapshot["destinations"][0]["route_when"] == FINAL_REPORT
    Destination.objects.filter(pk=destination.pk).update(route_when="")
    channel.route_filter = ""
    channel.save()
    channel.rollback(version.number)
    channel.refresh_from_db()
    destination.refresh_from_db()
    assert channel.route_filter == "%messageCode = 'ORU'"
    assert destination.route_when == FINAL_REPORT


def test_a_message_not_sent_as_hl7_v2_has_an_empty_v2_header(destination):
    from adapters.codecs import fhir_json

    rule = "%messageType = '' and entry.resource.ofType(Patient).exists()"
    Destination.objects.filter(pk=destination.pk).update(route_when=rule)
    patient = {"resourceType": "Patient", "name": [{"family": "NAKAMURA"}]}
    message = Message.objects.create(
        channel=destination.channel,
        raw=json.dumps(patient).encode(),
        content_type=fhir_json.MEDIA_TYPE,
        message_type="Patient:",
        control_id="FHIR-1",
    )
    process_messages([message.pk])
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED, message.error_detail
    assert message.routing[0]["reason"] == f"`{rule}` evaluated true"
