"""Destinations trade names: a draft that swaps two destinations' names, or gives one the name
another had before the same draft renamed or removed it, publishes (names are unique per channel
in the end, not at each step), each destination keeping its id, settings, secrets and delivery
history; a rollback to a version that had the names the other way round puts them back by id; a
draft that really names two destinations alike is refused with a 400 naming the name, never a
500. A YAML file has no ids: its destinations are found by name, so "swapping" names there moves
settings between names, which imports like any other change."""

from __future__ import annotations

import pytest

from channels_app import config_io
from channels_app.config_io import export_yaml
from channels_app.models import ChannelDraft, Delivery, Destination, Message
from channels_app.sealing import open_config
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel():
    """v1: "EHR" (FHIR REST, a bearer token, 5 s) and "LIS" (file, 7 s), one delivery each."""
    channel = factories.channel(40631, name="Lab feed")
    ehr = factories.fhir_destination(channel, "", name="EHR")
    ehr.set_config({"base_url": "http://127.0.0.1:9/ehr", "bearer_token": "ehr-secret"})
    ehr.save()
    Destination.objects.create(
        channel=channel,
        name="LIS",
        transport="file",
        config={"directory": "/tmp/hub-lis"},
        timeout_s=7,
    )
    for number, destination in enumerate(channel.destinations.order_by("id")):
        control_id = f"REN-{number}"
        raw = factories.adt_a01(control_id)
        message = Message.objects.create(channel=channel, raw=raw, control_id=control_id)
        Delivery.objects.create(message=message, destination=destination, status="DELIVERED")
    channel.publish(note="first")
    return channel


def patch(client, url: str, data: dict):
    return client.patch(url, data, content_type="application/json")


def rows(channel) -> dict[str, Destination]:
    return {d.name: d for d in channel.destinations.all()}


def assert_kept_by_id(channel, ehr_pk: int, lis_pk: int, *, ehr_name: str, lis_name: str):
    """Each row holds its own settings, secret and deliveries under the name it now has."""
    ehr, lis = Destination.objects.get(pk=ehr_pk), Destination.objects.get(pk=lis_pk)
    assert (ehr.name, ehr.transport, ehr.timeout_s) == (ehr_name, "fhir_rest", 5)
    assert open_config("fhir_rest", ehr.config) == {
        "base_url": "http://127.0.0.1:9/ehr",
        "bearer_token": "ehr-secret",
    }
    assert (lis.name, lis.transport, lis.timeout_s) == (lis_name, "file", 7)
    assert lis.config["directory"] == "/tmp/hub-lis"
    assert [d.message.control_id for d in ehr.deliveries.select_related("message")] == ["REN-0"]
    assert [d.message.control_id for d in lis.deliveries.select_related("message")] == ["REN-1"]
    assert ehr.enabled and lis.enabled
    assert channel.destinations.count() == 2


def test_names_swapped_one_destination_at_a_time_publish(analyst, channel):
    ehr, lis = rows(channel)["EHR"], rows(channel)["LIS"]
    assert patch(analyst, f"/api/v1/destinations/{ehr.pk}/", {"name": "swap"}).status_code == 200
    assert patch(analyst, f"/api/v1/destinations/{lis.pk}/", {"name": "EHR"}).status_code == 200
    url = f"/api/v1/destinations/{ehr.pk}/?publish=true&note=swap"
    answer = patch(analyst, url, {"name": "LIS"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["id"], body["name"], body["version"]) == (ehr.pk, "LIS", 2)
    assert_kept_by_id(channel, ehr.pk, lis.pk, ehr_name="LIS", lis_name="EHR")
    recorded = channel.versions.get(number=2).snapshot["destinations"]
    assert {(d["id"], d["name"], d["transport"]) for d in recorded} == {
        (ehr.pk, "LIS", "fhir_rest"),
        (lis.pk, "EHR", "file"),
    }
    published = AuditEvent.objects.get(action="channel.published")
    assert published.detail["version"] == 2
    assert published.detail["changes"]["destinations.EHR.transport"] == ["fhir_rest", "file"]


def test_names_swapped_in_one_draft_publish(analyst, channel):
    ehr, lis = rows(channel)["EHR"], rows(channel)["LIS"]
    draft_url = f"/api/v1/channels/{channel.pk}/draft/"
    snapshot = analyst.get(draft_url).json()["snapshot"]
    for entry in snapshot["destinations"]:
        entry["name"] = {"EHR": "LIS", "LIS": "EHR"}[entry["name"]]
    saved = analyst.put(draft_url, {"snapshot": snapshot}, content_type="application/json")
    assert saved.status_code == 200, saved.content
    published = analyst.post(f"{draft_url}publish/", {"note": "swap"}, "application/json")
    assert published.status_code == 201, published.content
    assert published.json()["number"] == 2
    assert_kept_by_id(channel, ehr.pk, lis.pk, ehr_name="LIS", lis_name="EHR")


def test_a_destination_takes_the_name_of_one_the_draft_removes(analyst, channel):
    ehr, lis = rows(channel)["EHR"], rows(channel)["LIS"]
    draft_url = f"/api/v1/channels/{channel.pk}/draft/"
    snapshot = analyst.get(draft_url).json()["snapshot"]
    snapshot["destinations"] = [
        {**entry, "name": "LIS"} for entry in snapshot["destinations"] if entry["id"] == ehr.pk
    ]
    assert analyst.put(draft_url, {"snapshot": snapshot}, "application/json").status_code == 200
    published = analyst.post(f"{draft_url}publish/", {}, "application/json")
    assert published.status_code == 201, published.content
    ehr.refresh_from_db()
    lis.refresh_from_db()
    assert (ehr.name, ehr.transport, ehr.enabled) == ("LIS", "fhir_rest", True)
    # The removed one is kept for its deliveries, disabled, under a name of its own; the audit
    # says so beside the draft's diff.
    assert (lis.name, lis.transport, lis.enabled) == ("LIS (removed)", "file", False)
    detail = AuditEvent.objects.get(action="channel.published").detail
    assert detail["set_aside"] == [{"destination": lis.pk, "from": "LIS", "to": "LIS (removed)"}]
    assert lis.deliveries.count() == 1
    recorded = channel.versions.get(number=2).snapshot["destinations"]
    assert {d["name"]: d["enabled"] for d in recorded} == {"LIS": True, "LIS (removed)": False}


def test_a_new_destination_takes_the_name_a_renamed_one_had(analyst, channel):
    ehr = rows(channel)["EHR"]
    assert patch(analyst, f"/api/v1/destinations/{ehr.pk}/", {"name": "EHR old"}).status_code == 200
    new = {
        "channel": channel.pk,
        "name": "EHR",
        "transport": "file",
        "config": {"directory": "/tmp/hub-new-ehr"},
    }
    url = "/api/v1/destinations/?publish=true"
    created = analyst.post(url, new, content_type="application/json")
    assert created.status_code == 201, created.content
    fresh = Destination.objects.get(channel=channel, name="EHR")
    assert created.json()["id"] == fresh.pk != ehr.pk
    assert (fresh.transport, fresh.config["directory"]) == ("file", "/tmp/hub-new-ehr")
    assert fresh.deliveries.count() == 0
    ehr.refresh_from_db()
    assert (ehr.name, ehr.transport, ehr.deliveries.count()) == ("EHR old", "fhir_rest", 1)
    assert open_config("fhir_rest", ehr.config)["bearer_token"] == "ehr-secret"
    assert channel.destinations.count() == 3


def test_rollback_to_the_names_the_other_way_round_goes_by_id(analyst, channel, hub_admin_user):
    ehr, lis = rows(channel)["EHR"], rows(channel)["LIS"]
    draft_url = f"/api/v1/channels/{channel.pk}/draft/"
    snapshot = analyst.get(draft_url).json()["snapshot"]
    for entry in snapshot["destinations"]:
        entry["name"] = {"EHR": "LIS", "LIS": "EHR"}[entry["name"]]
    analyst.put(draft_url, {"snapshot": snapshot}, content_type="application/json")
    assert analyst.post(f"{draft_url}publish/", {}, "application/json").status_code == 201
    assert_kept_by_id(channel, ehr.pk, lis.pk, ehr_name="LIS", lis_name="EHR")

    admin = signed_in(hub_admin_user)
    rollback = f"/api/v1/channels/{channel.pk}/rollback/"
    back = admin.post(rollback, {"version": 1}, "application/json")
    assert back.status_code == 200, back.content
    assert back.json()["current_version"] == 3
    assert_kept_by_id(channel, ehr.pk, lis.pk, ehr_name="EHR", lis_name="LIS")
    event = AuditEvent.objects.get(action="channel.rolled_back")
    assert (event.detail["to_version"], event.detail["version"]) == (1, 3)

    forth = admin.post(rollback, {"version": 2}, "application/json")
    assert forth.status_code == 200, forth.content
    assert_kept_by_id(channel, ehr.pk, lis.pk, ehr_name="LIS", lis_name="EHR")


def test_two_destinations_named_alike_are_refused_naming_the_name(analyst, channel):
    ehr, lis = rows(channel)["EHR"], rows(channel)["LIS"]
    answer = patch(analyst, f"/api/v1/destinations/{lis.pk}/?publish=true", {"name": "EHR"})
    assert answer.status_code == 400
    assert answer.json()["name"] == ["another destination is named “EHR”"]

    draft_url = f"/api/v1/channels/{channel.pk}/draft/"
    snapshot = analyst.get(draft_url).json()["snapshot"]
    twice = [*snapshot["destinations"], {**snapshot["destinations"][0], "name": "EHR 2"}]
    answer = analyst.put(
        draft_url, {"snapshot": {**snapshot, "destinations": twice}}, "application/json"
    )
    assert answer.status_code == 400
    twice_listed = {"destinations.2.id": "the draft lists this destination twice"}
    assert answer.json()["snapshot"] == twice_listed
    assert (rows(channel)["EHR"].pk, rows(channel)["LIS"].pk) == (ehr.pk, lis.pk)
    assert channel.versions.count() == 1 and not ChannelDraft.objects.exists()


def test_a_file_that_swaps_names_imports_its_settings_by_name(channel, hub_admin_user):
    ehr, lis = rows(channel)["EHR"], rows(channel)["LIS"]
    doc = config_io.load(export_yaml([channel]))
    [ehr_doc, lis_doc] = doc["channels"][0]["destinations"]
    ehr_doc["name"], lis_doc["name"] = "LIS", "EHR"
    ehr_doc["config"]["bearer_token"] = "written-in-the-file"  # a marker has no stored secret here
    response = signed_in(hub_admin_user).post(
        "/api/v1/channels/import/",
        {"document": config_io.dump(doc), "publish": True},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    [result] = response.json()["channels"]
    assert result["version"] == 2
    ehr.refresh_from_db()
    lis.refresh_from_db()
    # No ids in a file: the row named "EHR" takes the file's "EHR" (the file transport) and so on.
    assert (ehr.name, ehr.transport, ehr.deliveries.count()) == ("EHR", "file", 1)
    assert (lis.name, lis.transport, lis.deliveries.count()) == ("LIS", "fhir_rest", 1)
    assert open_config("fhir_rest", lis.config)["bearer_token"] == "written-in-the-file"


def test_a_version_recorded_without_ids_is_still_found_by_name(channel, hub_admin_user):
    """Versions from before snapshots held destination ids: publishing nothing new adds no
    version, and a rollback to one finds its destinations by name as it always did."""
    first = channel.versions.get()
    for entry in first.snapshot["destinations"]:
        del entry["id"]
    first.save()
    assert channel.publish().pk == first.pk
    ehr, lis = rows(channel)["EHR"], rows(channel)["LIS"]
    ehr.timeout_s = 30
    ehr.save()
    assert channel.publish().number == 2
    back = signed_in(hub_admin_user).post(
        f"/api/v1/channels/{channel.pk}/rollback/", {"version": 1}, "application/json"
    )
    assert back.status_code == 200, back.content
    assert_kept_by_id(channel, ehr.pk, lis.pk, ehr_name="EHR", lis_name="LIS")
