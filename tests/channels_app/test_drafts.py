"""A channel's draft: checked like a form, applied on publish (secrets kept, destinations added and
removed), compared with the live version, previewed on the channel's samples."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from channels_app import drafts
from channels_app.models import ChannelDraft, ChannelSample, Destination
from channels_app.sealing import SECRET_MARKER, open_config
from tests import factories

pytestmark = pytest.mark.django_db
KEY = Fernet.generate_key().decode()


@pytest.fixture
def channel(settings):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    channel = factories.channel(40601)
    ehr = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    ehr.set_config({"base_url": "http://127.0.0.1:9/fhir", "bearer_token": "live-secret"})
    ehr.save()
    channel.publish(note="first")
    return channel


def test_without_a_draft_the_draft_is_the_live_configuration(channel):
    document = drafts.draft_of(channel)
    assert document["name"] == channel.name
    (ehr,) = document["destinations"]
    assert ehr["id"] == channel.destinations.get().pk
    assert ehr["config"]["bearer_token"] == SECRET_MARKER
    assert "enabled" not in document and "paused" not in ehr
    assert drafts.draft_diff(channel) == []


def test_a_draft_leaves_the_live_channel_alone_until_published(channel, analyst_user):
    document = drafts.draft_of(channel)
    document["max_message_bytes"] = 4096
    document["destinations"][0]["timeout_s"] = 12
    drafts.save_draft(channel, document, analyst_user)
    channel.refresh_from_db()
    assert channel.max_message_bytes == 1024 * 1024
    assert channel.destinations.get().timeout_s == 5
    changed = {c["path"]: (c["before"], c["after"]) for c in drafts.draft_diff(channel)}
    assert changed == {
        "max_message_bytes": (1024 * 1024, 4096),
        "destinations.FHIR sink.timeout_s": (5, 12),
    }


def test_publishing_applies_the_draft_keeping_secrets_shown_as_the_marker(channel, analyst_user):
    document = drafts.draft_of(channel)
    document["destinations"][0]["timeout_s"] = 12
    drafts.save_draft(channel, document, analyst_user)
    version = drafts.publish_draft(channel, analyst_user, "longer timeout")
    ehr = channel.destinations.get()
    assert ehr.timeout_s == 12
    assert open_config(ehr.transport, ehr.config)["bearer_token"] == "live-secret"
    assert (version.number, version.note, version.created_by) == (2, "longer timeout", analyst_user)
    assert not ChannelDraft.objects.exists()


def test_a_secret_changed_in_the_draft_is_sealed_there_and_applied(channel, analyst_user):
    document = drafts.draft_of(channel)
    document["destinations"][0]["config"]["bearer_token"] = "new-secret"
    draft = drafts.save_draft(channel, document, analyst_user)
    assert "new-secret" not in str(draft.snapshot)  # sealed in the draft as in the live row
    (change,) = drafts.draft_diff(channel)
    assert change["path"] == "destinations.FHIR sink.config.bearer_token"
    assert change["after"] == f"{SECRET_MARKER} (changed)"
    drafts.publish_draft(channel, analyst_user)
    ehr = channel.destinations.get()
    assert open_config(ehr.transport, ehr.config)["bearer_token"] == "new-secret"


def test_a_destination_added_is_created_and_one_removed_is_disabled(channel, analyst_user):
    document = drafts.draft_of(channel)
    document["destinations"] = [
        {
            "id": None,
            "name": "archive",
            "transport": "file",
            "config": {"directory": "/tmp/hub-archive"},
        }
    ]
    drafts.save_draft(channel, document, analyst_user)
    drafts.publish_draft(channel, analyst_user)
    by_name = {d.name: d for d in channel.destinations.all()}
    assert by_name.keys() == {"FHIR sink", "archive"}
    assert not by_name["FHIR sink"].enabled  # messages point at it: kept, disabled
    assert by_name["archive"].enabled and by_name["archive"].transport == "file"
    assert channel.current_version().snapshot["destinations"][1]["name"] == "archive"


def test_a_renamed_destination_keeps_its_row(channel, analyst_user):
    document = drafts.draft_of(channel)
    document["destinations"][0]["name"] = "EHR"
    drafts.save_draft(channel, document, analyst_user)
    row = channel.destinations.get()
    drafts.publish_draft(channel, analyst_user)
    assert list(channel.destinations.values_list("pk", "name")) == [(row.pk, "EHR")]


def test_a_draft_is_checked_like_the_forms_and_names_each_wrong_key(channel, analyst_user):
    document = drafts.draft_of(channel)
    document["route_filter"] = "%messageCode = "
    document["colour"] = "blue"
    document["destinations"][0]["timeout_s"] = 0
    document["destinations"][0]["config"] = {"base_url": "not a url"}
    document["destinations"].append({**document["destinations"][0], "id": None})
    with pytest.raises(drafts.DraftError) as refused:
        drafts.save_draft(channel, document, analyst_user)
    errors = refused.value.errors
    assert {"route_filter", "colour", "destinations.0.timeout_s", "destinations.0.config"} <= set(
        errors
    )
    assert "another destination" in errors["destinations.1.name"]
    assert not ChannelDraft.objects.exists()


def test_the_diff_of_two_versions_names_each_changed_setting(channel, analyst_user):
    channel.route_filter = "%messageCode = 'ADT'"
    channel.save()
    Destination.objects.update(timeout_s=30)
    v2 = channel.publish()
    v1 = channel.versions.get(number=1)
    changed = {c["path"]: (c["before"], c["after"]) for c in drafts.diff(v1.snapshot, v2.snapshot)}
    assert changed == {
        "route_filter": ("", "%messageCode = 'ADT'"),
        "destinations.FHIR sink.timeout_s": (5, 30),
    }
    assert drafts.diff(v2.snapshot, v2.snapshot) == []


def test_a_first_rule_in_an_empty_mapping_is_an_addition_not_a_removal(channel):
    before = {"mapping": {}, "name": "x"}
    after = {"mapping": {"tables": {"codes": {"A": "1"}}}, "name": "x"}
    assert drafts.diff(before, after) == [
        {"path": "mapping.tables.codes.A", "before": None, "after": "1"}
    ]
    assert drafts.diff(after, before) == [
        {"path": "mapping.tables.codes.A", "before": "1", "after": None}
    ]
    assert drafts.diff({"mapping": {}}, {}) == [{"path": "mapping", "before": {}, "after": None}]


def test_the_preview_runs_each_sample_live_and_as_drafted(channel, analyst_user):
    ChannelSample.objects.create(channel=channel, name="adt", raw=factories.adt_a01().decode())
    ChannelSample.objects.create(channel=channel, name="oru", raw=factories.oru_r01().decode())
    document = drafts.draft_of(channel)
    document["destinations"][0]["timeout_s"] = 12  # a policy: no output changes
    drafts.save_draft(channel, document, analyst_user)
    assert [(p.name, p.status, p.diff) for p in drafts.preview(channel)] == [
        ("adt", drafts.UNCHANGED, ""),
        ("oru", drafts.UNCHANGED, ""),
    ]
    document["destinations"][0]["route_when"] = "%messageCode = 'ORU'"
    drafts.save_draft(channel, document, analyst_user)
    found = {p.name: p for p in drafts.preview(channel)}
    assert found["adt"].status == drafts.CHANGED
    assert "--- live" in found["adt"].diff and '-    "FHIR sink": "sent:' in found["adt"].diff
    assert '+    "FHIR sink": "not sent"' in found["adt"].diff
    assert "FHIR sink" in channel.destinations.values_list("name", flat=True)  # nothing written
