"""The draft banner, the publish page, the Versions page and the rollback confirmation, as pages:
what each shows, what a POST does, and who may do it."""

from __future__ import annotations

import pytest

from channels_app import drafts
from channels_app.models import ChannelDraft, ChannelSample, Message
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel(analyst_user):
    channel = factories.channel(40621, name="Lab feed")
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    ChannelSample.objects.create(channel=channel, name="adt", raw=factories.adt_a01().decode())
    channel.publish(note="first")
    return channel


def draft_timeout(channel, user, timeout: float = 9) -> None:
    document = drafts.draft_of(channel)
    document["destinations"][0]["timeout_s"] = timeout
    drafts.save_draft(channel, document, user, note="slower EHR")


def test_the_channel_card_shows_the_draft_and_its_actions(analyst_user, viewer_user, channel):
    draft_timeout(channel, analyst_user)
    page = signed_in(analyst_user).get("/channels/").content.decode()
    assert 'data-draft="1"' in page and "1 change, not running until published" in page
    assert f"/channels/{channel.pk}/publish/" in page
    assert f"/channels/{channel.pk}/draft/discard/" in page
    seen = signed_in(viewer_user).get("/channels/").content.decode()
    assert 'data-draft="1"' in seen and f"/channels/{channel.pk}/publish/" not in seen


def test_the_publish_page_shows_the_diff_and_each_sample(analyst_user, channel):
    draft_timeout(channel, analyst_user)
    page = signed_in(analyst_user).get(f"/channels/{channel.pk}/publish/").content.decode()
    assert 'data-change="destinations.EHR.timeout_s"' in page
    assert 'data-sample="adt" data-status="unchanged"' in page  # a timeout changes no output
    assert 'value="slower EHR"' in page and "Publish as version 2" in page


def test_publishing_from_the_page_records_the_version_with_its_note(analyst_user, channel):
    draft_timeout(channel, analyst_user)
    client = signed_in(analyst_user)
    response = client.post(f"/channels/{channel.pk}/publish/", {"note": "EHR is slow today"})
    assert response.status_code == 302
    assert response.url == f"/channels/{channel.pk}/versions/#version-2"
    version = channel.current_version()
    assert (version.number, version.note, version.created_by) == (
        2,
        "EHR is slow today",
        analyst_user,
    )
    assert channel.destinations.get().timeout_s == 9
    assert not ChannelDraft.objects.exists()
    event = AuditEvent.objects.get(action="channel.published")
    assert event.detail["changes"] == {"destinations.EHR.timeout_s": [5, 9]}
    gone = client.get(f"/channels/{channel.pk}/publish/")
    assert gone.status_code == 302  # no draft left: back to the channel


def test_discarding_leaves_the_channel_as_it_runs(analyst_user, channel):
    draft_timeout(channel, analyst_user)
    response = signed_in(analyst_user).post(f"/channels/{channel.pk}/draft/discard/")
    assert response.status_code == 302 and not ChannelDraft.objects.exists()
    assert channel.destinations.get().timeout_s == 5
    assert AuditEvent.objects.filter(action="channel.draft_discarded").exists()


def test_the_versions_page_lists_and_compares(analyst_user, viewer_user, channel):
    draft_timeout(channel, analyst_user)
    drafts.publish_draft(channel, analyst_user, "slower")
    client = signed_in(viewer_user)
    page = client.get(f"/channels/{channel.pk}/versions/").content.decode()
    assert 'id="version-2"' in page and 'id="version-1"' in page and "slower" in page
    assert 'data-action="roll-back"' not in page  # viewers do not roll back
    assert f'href="/channels/{channel.pk}/mapping/"' in page
    assert 'data-action="test-bench"' not in page  # the bench is the analysts'
    as_analyst = signed_in(analyst_user).get(f"/channels/{channel.pk}/versions/").content.decode()
    assert f'href="/channels/{channel.pk}/bench/"' in as_analyst
    compared = client.get(f"/channels/{channel.pk}/versions/?a=1&b=2").content.decode()
    assert (
        'id="version-diff"' in compared and 'data-change="destinations.EHR.timeout_s"' in compared
    )
    same = client.get(f"/channels/{channel.pk}/versions/?a=2&b=2").content.decode()
    assert "The two versions have the same settings." in same


def test_an_admin_rolls_back_after_confirming(hub_admin_user, analyst_user, channel):
    draft_timeout(channel, analyst_user)
    drafts.publish_draft(channel, analyst_user)
    client = signed_in(hub_admin_user)
    listed = client.get(f"/channels/{channel.pk}/versions/").content.decode()
    assert f"/channels/{channel.pk}/versions/1/rollback/" in listed
    confirm = client.get(f"/channels/{channel.pk}/versions/1/rollback/").content.decode()
    assert 'data-change="destinations.EHR.timeout_s"' in confirm
    assert channel.versions.count() == 2  # asking changes nothing
    response = client.post(f"/channels/{channel.pk}/versions/1/rollback/")
    assert response.status_code == 302
    assert channel.current_version().number == 3
    assert channel.destinations.get().timeout_s == 5
    event = AuditEvent.objects.get(action="channel.rolled_back")
    assert event.actor == hub_admin_user and event.detail["to_version"] == 1
    assert (
        signed_in(analyst_user).post(f"/channels/{channel.pk}/versions/1/rollback/").status_code
        == 403
    )


def test_the_message_page_links_the_version_that_processed_it(viewer_user, channel):
    version = channel.current_version()
    message = Message.objects.create(
        channel=channel, channel_version=version, raw=factories.adt_a01("V-1")
    )
    page = signed_in(viewer_user).get(f"/messages/{message.pk}/").content.decode()
    assert f'href="/channels/{channel.pk}/versions/#version-1"' in page
    assert 'data-channel-version="1"' in page


def test_a_draft_the_form_cannot_keep_is_refused_on_the_form(analyst_user, channel):
    document = drafts.draft_of(channel)
    extra = {**document["destinations"][0], "id": None, "name": "Archive"}
    drafts.save_draft(channel, {**document, "destinations": [*document["destinations"], extra]})
    ehr = channel.destinations.get()
    form = {
        "name": "Archive",  # the draft already adds a destination of that name
        "enabled": "on",
        "route_when": "",
        "config-base_url": "http://127.0.0.1:9/fhir",
        "config-mode": "transaction",
        "config-headers": "{}",
        **{f: getattr(ehr, f) for f in ehr.POLICY if getattr(ehr, f) is not None},
    }
    response = signed_in(analyst_user).post(f"/destinations/{ehr.pk}/edit/", form)
    assert response.status_code == 200
    assert "another destination is named “Archive”" in response.content.decode()
    assert [d["name"] for d in drafts.draft_of(channel)["destinations"]] == ["EHR", "Archive"]
