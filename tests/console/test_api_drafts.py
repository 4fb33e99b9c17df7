"""The draft and version routes of the REST API: read, replace, preview, publish and discard a
channel's draft; compare two versions. Analysts edit and publish; viewers compare versions."""

from __future__ import annotations

import pytest

from channels_app.models import ChannelDraft, ChannelSample
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel():
    channel = factories.channel(40611)
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    ChannelSample.objects.create(channel=channel, name="adt", raw=factories.adt_a01().decode())
    channel.publish(note="first")
    return channel


def url(channel, tail: str = "") -> str:
    return f"/api/v1/channels/{channel.pk}/draft/{tail}"


def put(client, channel, snapshot: dict, note: str = ""):
    body = {"snapshot": snapshot, "note": note}
    return client.put(url(channel), body, content_type="application/json")


def drafted_timeout(client, channel, timeout: float):
    snapshot = client.get(url(channel)).json()["snapshot"]
    snapshot["destinations"][0]["timeout_s"] = timeout
    snapshot["destinations"][0]["route_when"] = "%messageCode = 'ORU'"
    return put(client, channel, snapshot, "route only results")


def test_get_gives_the_live_configuration_until_there_is_a_draft(analyst_user, channel):
    answer = signed_in(analyst_user).get(url(channel)).json()
    assert answer["exists"] is False and answer["changes"] == []
    assert answer["snapshot"]["destinations"][0]["name"] == "FHIR sink"


def test_put_keeps_a_draft_and_leaves_the_channel_running_as_it_was(analyst_user, channel):
    client = signed_in(analyst_user)
    response = drafted_timeout(client, channel, 9)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["exists"] and answer["note"] == "route only results"
    assert answer["updated_by"] == analyst_user.username
    paths = {c["path"]: c["after"] for c in answer["changes"]}
    assert paths == {
        "destinations.FHIR sink.timeout_s": 9,
        "destinations.FHIR sink.route_when": "%messageCode = 'ORU'",
    }
    assert channel.destinations.get().timeout_s == 5
    event = AuditEvent.objects.get(action="channel.draft_saved")
    assert event.detail["changes"]["destinations.FHIR sink.timeout_s"] == [5, 9]


def test_put_refuses_a_wrong_draft_naming_the_key(analyst_user, channel):
    client = signed_in(analyst_user)
    snapshot = client.get(url(channel)).json()["snapshot"]
    snapshot["destinations"][0]["route_when"] = "%messageCode = "
    response = put(client, channel, snapshot)
    assert response.status_code == 400
    assert "destinations.0.route_when" in response.json()["snapshot"]
    assert not ChannelDraft.objects.exists()


def test_preview_says_which_samples_the_draft_changes(analyst_user, channel):
    client = signed_in(analyst_user)
    drafted_timeout(client, channel, 9)
    (adt,) = client.get(url(channel, "preview/")).json()
    assert adt["name"] == "adt" and adt["status"] == "changed"
    assert '+    "FHIR sink": "not sent"' in adt["diff"]


def test_publish_creates_a_version_and_audits_its_diff(analyst_user, channel):
    client = signed_in(analyst_user)
    drafted_timeout(client, channel, 9)
    response = client.post(url(channel, "publish/"), {"note": "results only"}, "application/json")
    assert response.status_code == 201, response.content
    assert response.json()["number"] == 2 and response.json()["note"] == "results only"
    assert channel.destinations.get().timeout_s == 9
    assert not ChannelDraft.objects.exists()
    event = AuditEvent.objects.get(action="channel.published")
    assert event.detail["version"] == 2
    assert event.detail["changes"]["destinations.FHIR sink.timeout_s"] == [5, 9]
    again = client.post(url(channel, "publish/"), {}, "application/json")
    assert again.status_code == 409


def test_delete_discards_the_draft(analyst_user, channel):
    client = signed_in(analyst_user)
    drafted_timeout(client, channel, 9)
    assert client.delete(url(channel)).status_code == 204
    assert not ChannelDraft.objects.exists()
    assert AuditEvent.objects.filter(action="channel.draft_discarded").exists()
    assert client.delete(url(channel)).status_code == 404


def test_a_viewer_compares_two_versions_but_cannot_touch_the_draft(
    analyst_user, viewer_user, channel
):
    drafted_timeout(signed_in(analyst_user), channel, 9)
    signed_in(analyst_user).post(url(channel, "publish/"), {}, "application/json")
    viewer = signed_in(viewer_user)
    answer = viewer.get(f"/api/v1/channels/{channel.pk}/versions/diff/?a=1&b=2")
    assert answer.status_code == 200
    assert {"path": "destinations.FHIR sink.timeout_s", "before": 5, "after": 9} in answer.json()
    missing = viewer.get(f"/api/v1/channels/{channel.pk}/versions/diff/?a=1&b=7")
    assert missing.status_code == 400 and "b" in missing.json()
    assert viewer.get(url(channel)).status_code == 403
    assert put(viewer, channel, {}).status_code == 403
    assert viewer.post(url(channel, "publish/"), {}, "application/json").status_code == 403
