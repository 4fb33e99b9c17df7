"""An admin puts a channel back as an earlier version recorded it: settings restored, secrets kept,
runtime state untouched, history grown by one version, the whole change audited with its diff."""

from __future__ import annotations

import json

import pytest

from channels_app.models import Destination
from channels_app.sealing import open_config
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(hub_admin_user):
    """A channel at v1 (timeout 5 s, bearer token 'first-secret'), then changed and published v2
    (timeout 60 s, new token, a second destination, a larger message limit)."""
    channel = factories.channel(40501, max_message_bytes=1000)
    ehr = factories.fhir_destination(
        channel, "http://127.0.0.1:9/fhir", config={"base_url": "http://127.0.0.1:9/fhir"}
    )
    ehr.set_config({"base_url": "http://127.0.0.1:9/fhir", "bearer_token": "first-secret"})
    ehr.save()
    channel.publish(user=hub_admin_user)
    channel.max_message_bytes = 2000
    channel.save()
    ehr.timeout_s = 60
    ehr.set_config({"base_url": "http://127.0.0.1:9/fhir", "bearer_token": "second-secret"})
    ehr.save()
    factories.fhir_destination(channel, "http://127.0.0.1:9/other", name="added later")
    channel.publish(user=hub_admin_user)
    return channel


def test_rollback_restores_settings_and_publishes_a_new_version(hub_admin_user, published):
    ehr = published.destinations.get(name="FHIR sink")
    ehr.paused = True  # runtime state: a rollback leaves it alone
    ehr.save()
    response = signed_in(hub_admin_user).post(
        f"/api/v1/channels/{published.pk}/rollback/", {"version": 1}, "application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["current_version"] == 3
    published.refresh_from_db()
    ehr.refresh_from_db()
    assert published.max_message_bytes == 1000
    assert ehr.timeout_s == 5 and ehr.paused
    # The snapshot held only the marker: the secret stored now is kept, not the marker.
    assert open_config(ehr.transport, ehr.config)["bearer_token"] == "second-secret"
    assert not published.destinations.get(name="added later").enabled
    assert published.current_version().note == "rollback to v1"


def test_rollback_is_audited_with_its_diff_and_no_secret(hub_admin_user, published):
    signed_in(hub_admin_user).post(
        f"/api/v1/channels/{published.pk}/rollback/", {"version": 1}, "application/json"
    )
    event = AuditEvent.objects.get(action="channel.rolled_back")
    assert event.actor_name == hub_admin_user.username
    assert event.detail["to_version"] == 1 and event.detail["version"] == 3
    changes = event.detail["changes"]
    assert changes["max_message_bytes"] == [2000, 1000]
    assert "secret" not in json.dumps(event.detail)


def test_rollback_to_a_missing_version_says_so(hub_admin_user, published):
    response = signed_in(hub_admin_user).post(
        f"/api/v1/channels/{published.pk}/rollback/", {"version": 9}, "application/json"
    )
    assert response.status_code == 400
    assert "no version 9" in response.json()["version"][0]
    assert not AuditEvent.objects.filter(action="channel.rolled_back").exists()


def test_only_admins_roll_back_and_viewers_list_versions(analyst_user, viewer_user, published):
    url = f"/api/v1/channels/{published.pk}/rollback/"
    assert signed_in(analyst_user).post(url, {"version": 1}, "application/json").status_code == 403
    versions = signed_in(viewer_user).get(f"/api/v1/channels/{published.pk}/versions/").json()
    assert [v["number"] for v in versions] == [2, 1]
    assert "second-secret" not in json.dumps(versions)
    assert Destination.objects.filter(channel=published).count() == 2
