"""The API's writes of a channel's configuration (PUT/PATCH of a channel, POST/PUT/PATCH of a
destination, PUT of the field rules) change the channel's draft, as the console's pages do, and
answer with what the draft now holds; ``?publish=true&note=`` publishes it in the same request.
What runs changes only when a version is published."""

from __future__ import annotations

import pytest

from channels_app import drafts
from channels_app.models import Channel, ChannelDraft, Destination
from console.models import AuditEvent
from console.roles import Role
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel():
    channel = factories.channel(40621)
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    channel.publish(note="first")
    return channel


def patch(client, url: str, data: dict):
    return client.patch(url, data, content_type="application/json")


def test_a_channel_change_goes_to_the_draft_and_the_answer_says_so(analyst, channel):
    answer = patch(analyst, f"/api/v1/channels/{channel.pk}/", {"description": "lab feed"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["description"] == "lab feed" and body["version"] is None
    draft_url = f"/api/v1/channels/{channel.pk}/draft/"
    assert body["draft"]["url"] == draft_url and answer["Location"] == draft_url
    assert body["draft"]["changes"] == [{"path": "description", "before": "", "after": "lab feed"}]
    assert analyst.get(f"/api/v1/channels/{channel.pk}/").json()["description"] == ""
    assert analyst.get(draft_url).json()["snapshot"]["description"] == "lab feed"
    assert channel.versions.count() == 1
    event = AuditEvent.objects.get(action="channel.draft_saved")
    assert event.detail["changes"] == {"description": ["", "lab feed"]}


def test_publish_true_puts_the_change_live_as_a_version_with_its_note(analyst, channel):
    url = f"/api/v1/channels/{channel.pk}/?publish=true&note=lab+only"
    answer = patch(analyst, url, {"route_filter": "%messageCode = 'ORU'"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["version"] == 2 and body["draft"] is None and "Location" not in answer
    assert body["current_version"] == 2
    channel.refresh_from_db()
    assert channel.route_filter == "%messageCode = 'ORU'"
    assert channel.versions.get(number=2).note == "lab only"
    assert not ChannelDraft.objects.exists()
    published = AuditEvent.objects.get(action="channel.published")
    assert published.detail["version"] == 2 and published.detail["note"] == "lab only"
    assert published.detail["changes"] == {"route_filter": ["", "%messageCode = 'ORU'"]}


def test_publishing_takes_the_earlier_draft_changes_with_it(analyst, channel):
    patch(analyst, f"/api/v1/channels/{channel.pk}/", {"description": "drafted first"})
    answer = patch(analyst, f"/api/v1/channels/{channel.pk}/", {"retention_days": 30})
    assert {c["path"] for c in answer.json()["draft"]["changes"]} == {
        "description",
        "retention_days",
    }
    patch(analyst, f"/api/v1/channels/{channel.pk}/?publish=true", {})
    channel.refresh_from_db()
    assert (channel.description, channel.retention_days) == ("drafted first", 30)


def test_publish_true_refuses_to_carry_another_analysts_unpublished_draft(analyst, channel):
    other = signed_in(factories.user("analyst2", Role.ANALYST))
    patch(other, f"/api/v1/channels/{channel.pk}/", {"description": "not reviewed yet"})
    refused = patch(analyst, f"/api/v1/channels/{channel.pk}/?publish=true", {"tags": ["x"]})
    assert refused.status_code == 400
    assert "unpublished changes by analyst2" in refused.json()["publish"][0]
    channel.refresh_from_db()
    assert channel.tags == [] and channel.versions.count() == 1
    assert drafts.draft_of(channel)["description"] == "not reviewed yet"
    assert drafts.draft_of(channel)["tags"] == []  # nothing of the refused write was kept
    saved = patch(analyst, f"/api/v1/channels/{channel.pk}/", {"tags": ["x"]})  # no publish
    assert saved.status_code == 200 and saved.json()["tags"] == ["x"]


def test_a_refused_write_changes_nothing(analyst, channel):
    bad = patch(analyst, f"/api/v1/channels/{channel.pk}/?publish=true", {"route_filter": "%a = "})
    assert bad.status_code == 400 and "route_filter" in bad.json()
    long_note = patch(
        analyst, f"/api/v1/channels/{channel.pk}/?publish=true&note={'n' * 201}", {"tags": ["x"]}
    )
    assert long_note.status_code == 400 and "note" in long_note.json()
    assert not ChannelDraft.objects.exists() and channel.versions.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="channel.").exists()


def test_a_port_taken_by_another_channel_is_refused_as_the_draft_refuses_it(analyst, channel):
    factories.channel(40622, name="other")
    answer = patch(analyst, f"/api/v1/channels/{channel.pk}/", {"source_config": {"port": 40622}})
    assert answer.status_code == 400
    assert "“other” already uses this port" in answer.json()["source_config"][0]


def test_enabling_is_an_action_of_its_own_not_a_draft(analyst, channel):
    answer = patch(analyst, f"/api/v1/channels/{channel.pk}/", {"enabled": False})
    assert answer.status_code == 200 and answer.json()["draft"] is None
    channel.refresh_from_db()
    assert not channel.enabled and not ChannelDraft.objects.exists()
    assert AuditEvent.objects.get(action="channel.updated").detail["changes"] == {
        "enabled": [True, False]
    }


def test_a_channel_created_through_the_api_runs_as_created_like_the_pages(analyst):
    body = {"name": "new feed", "source_type": "mllp", "source_config": {"port": 40623}}
    answer = analyst.post("/api/v1/channels/", body, content_type="application/json")
    assert answer.status_code == 201
    channel = Channel.objects.get(pk=answer.json()["id"])
    assert answer.json()["current_version"] is None and channel.port == 40623
    assert not ChannelDraft.objects.exists()


def test_a_new_destination_is_drafted_then_created_when_published(analyst, channel):
    new = {
        "channel": channel.pk,
        "name": "Archive",
        "transport": "file",
        "config": {"directory": "/tmp/hub-archive"},
    }
    answer = analyst.post("/api/v1/destinations/", new, content_type="application/json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["id"] is None and answer.json()["name"] == "Archive"
    assert answer["Location"] == f"/api/v1/channels/{channel.pk}/draft/"
    assert not Destination.objects.filter(name="Archive").exists()
    assert [d["name"] for d in drafts.draft_of(channel)["destinations"]] == ["FHIR sink", "Archive"]

    again = {**new, "name": "Archive 2"}
    url = "/api/v1/destinations/?publish=true&note=archive"
    created = analyst.post(url, again, content_type="application/json")
    assert created.status_code == 201, created.content
    live = Destination.objects.get(name="Archive 2")
    assert (
        created.json()["id"] == live.pk
        and created["Location"] == f"/api/v1/destinations/{live.pk}/"
    )
    assert created.json()["version"] == 2
    assert set(channel.destinations.values_list("name", flat=True)) == {
        "FHIR sink",
        "Archive",
        "Archive 2",
    }


def test_a_destination_change_goes_to_the_draft(analyst, channel):
    sink = channel.destinations.get()
    answer = patch(analyst, f"/api/v1/destinations/{sink.pk}/", {"timeout_s": 9})
    assert answer.status_code == 200, answer.content
    assert answer.json()["timeout_s"] == 9 and answer.json()["id"] == sink.pk
    assert answer.json()["draft"]["changes"] == [
        {"path": "destinations.FHIR sink.timeout_s", "before": 5.0, "after": 9.0}
    ]
    sink.refresh_from_db()
    assert sink.timeout_s == 5
    assert analyst.get(f"/api/v1/destinations/{sink.pk}/").json()["timeout_s"] == 5


def test_a_destination_name_is_unique_among_those_the_draft_lists(analyst, channel):
    sink = channel.destinations.get()
    renamed = patch(analyst, f"/api/v1/destinations/{sink.pk}/", {"name": "EHR"})
    assert renamed.status_code == 200
    freed = {
        "channel": channel.pk,
        "name": "FHIR sink",  # the draft renamed the live one: the name is free in the draft
        "transport": "file",
        "config": {"directory": "/tmp/hub-x"},
    }
    answer = analyst.post("/api/v1/destinations/", freed, content_type="application/json")
    assert answer.status_code == 202, answer.content
    clash = {**freed, "name": "EHR"}
    answer = analyst.post("/api/v1/destinations/", clash, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["name"] == ["another destination is named “EHR”"]


def test_a_destination_stays_on_its_channel(analyst, channel):
    other = factories.channel(40624, name="other")
    sink = channel.destinations.get()
    answer = patch(analyst, f"/api/v1/destinations/{sink.pk}/", {"channel": other.pk})
    assert answer.status_code == 400 and "channel" in answer.json()
    assert not ChannelDraft.objects.exists()
