"""/api/v1/channels/: create, update, enable/disable, clone, archive, restore and delete, each
audited with its before/after diff by the functions the Channels pages call too."""

from __future__ import annotations

import pytest

from channels_app.models import Channel, Destination, Message
from channels_app.sealing import SECRET_MARKER
from channels_app.sources import opened_source_config
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

TLS = {"cert_file": "/etc/hub/cert.pem", "key_file": "/etc/hub/key.pem"}


def post(client, url, data=None):
    return client.post(url, data or {}, content_type="application/json")


def patch(client, url, data):
    return client.patch(url, data, content_type="application/json")


def audited(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("id")


def test_an_analyst_creates_a_channel_and_it_is_audited(analyst_user):
    body = {
        "name": "lab feed",
        "tags": ["Lab", " north ", "lab"],
        "source_type": "mllp",
        "source_config": {"host": "127.0.0.1", "port": 40901},
    }
    response = post(signed_in(analyst_user), "/api/v1/channels/", body)
    assert response.status_code == 201, response.content
    channel = Channel.objects.get(pk=response.json()["id"])
    assert channel.tags == ["lab", "north"] and channel.source_config["port"] == 40901
    event = audited("channel.created")
    assert event.target == f"channel:{channel.pk}" and event.actor_name == "analyst"
    assert event.detail["changes"]["name"] == [None, "lab feed"]
    assert event.detail["changes"]["source_config"][1] == {"host": "127.0.0.1", "port": 40901}


def test_a_bad_source_is_refused_naming_the_key(analyst_user):
    body = {"name": "bad", "source_type": "mllp", "source_config": {"port": 70000}}
    response = post(signed_in(analyst_user), "/api/v1/channels/", body)
    assert response.status_code == 400
    assert response.json()["source_config"][0].startswith("port: ")
    assert not Channel.objects.filter(name="bad").exists()


def test_a_port_another_channel_listens_on_is_refused(analyst_user):
    factories.channel(40902, name="first")
    body = {"name": "second", "source_type": "mllp", "source_config": {"port": 40902}}
    response = post(signed_in(analyst_user), "/api/v1/channels/", body)
    assert response.status_code == 400
    assert "“first” already uses this port" in response.json()["source_config"][0]


def test_updating_is_audited_with_the_diff_and_secrets_stay_write_only(analyst_user):
    channel = factories.channel(
        40903, source_config={"port": 40903, "tls": {**TLS, "key_password": "s3cret-pw"}}
    )
    client = signed_in(analyst_user)
    shown = client.get(f"/api/v1/channels/{channel.pk}/").json()
    assert shown["source_config"]["tls"]["key_password"] == SECRET_MARKER
    changed = {**shown["source_config"], "idle_timeout_s": 30}
    response = patch(client, f"/api/v1/channels/{channel.pk}/", {"source_config": changed})
    assert response.status_code == 200, response.content
    assert response.json()["source_config"]["idle_timeout_s"] == 30  # as the draft has it
    assert "s3cret-pw" not in response.content.decode()
    channel.refresh_from_db()
    assert "idle_timeout_s" not in channel.source_config  # runs as before until published
    event = audited("channel.draft_saved")
    assert event.detail["changes"] == {"source_config.idle_timeout_s": [None, 30]}
    published = patch(client, f"/api/v1/channels/{channel.pk}/?publish=true", {})
    assert published.status_code == 200 and published.json()["version"] == 1
    channel.refresh_from_db()
    kept = opened_source_config("mllp", channel.source_config)["tls"]["key_password"]
    assert kept == "s3cret-pw"  # the marker kept it
    assert channel.source_config["idle_timeout_s"] == 30
    assert "s3cret-pw" not in str(list(AuditEvent.objects.values_list("detail", flat=True)))


def test_disabling_and_enabling_are_updates_audited_as_such(analyst_user):
    channel = factories.channel(40904)
    client = signed_in(analyst_user)
    assert patch(client, f"/api/v1/channels/{channel.pk}/", {"enabled": False}).status_code == 200
    assert audited("channel.updated").detail["changes"] == {"enabled": [True, False]}
    assert patch(client, f"/api/v1/channels/{channel.pk}/", {"enabled": True}).status_code == 200
    assert audited("channel.updated").detail["changes"] == {"enabled": [False, True]}
    channel.refresh_from_db()
    assert channel.enabled


def test_a_clone_copies_destinations_disabled_on_its_own_port(analyst_user):
    channel = factories.channel(
        40905, tags=["lab"], source_config={"port": 40905, "tls": {**TLS, "key_password": "pw"}}
    )
    original = factories.fhir_destination(
        channel, "http://127.0.0.1:9/fhir", ordering_key="PID-3.1"
    )
    original.paused, original.breaker_state = True, Destination.BreakerState.OPEN
    original.save()
    client = signed_in(analyst_user)
    url = f"/api/v1/channels/{channel.pk}/clone/"
    same_port = post(client, url, {"name": "lab copy"})
    assert same_port.status_code == 400
    assert "already uses this port" in same_port.json()["source_config"][0]
    response = post(client, url, {"name": "lab copy", "source_config": {"port": 40906}})
    assert response.status_code == 201, response.content
    copy = Channel.objects.get(pk=response.json()["id"])
    assert not copy.enabled and copy.tags == ["lab"]
    assert opened_source_config("mllp", copy.source_config) == {
        "port": 40906,
        "tls": {**TLS, "key_password": "pw"},
    }
    # the copy keeps the original's sealed value
    assert copy.source_config["tls"]["key_password"] == channel.source_config["tls"]["key_password"]
    (cloned,) = copy.destinations.all()
    assert (cloned.name, cloned.config, cloned.ordering_key) == (
        original.name,
        original.config,
        "PID-3.1",
    )
    assert not cloned.paused and cloned.breaker_state == Destination.BreakerState.CLOSED
    event = audited("channel.cloned")
    assert event.target == f"channel:{copy.pk}" and event.detail["from"] == channel.pk
    assert event.detail["destinations"] == 1 and "pw" not in str(event.detail["changes"])


def test_a_clone_needs_a_new_name(analyst_user):
    channel = factories.channel(40907)
    response = post(
        signed_in(analyst_user),
        f"/api/v1/channels/{channel.pk}/clone/",
        {"name": channel.name, "source_config": {"port": 40908}},
    )
    assert response.status_code == 400 and "name" in response.json()


def test_archiving_hides_and_disables_and_keeps_the_messages(analyst_user):
    channel = factories.channel(40909)
    message = Message.objects.create(channel=channel, raw=factories.adt_a01("ARCH-1"))
    client = signed_in(analyst_user)
    response = post(client, f"/api/v1/channels/{channel.pk}/archive/")
    assert response.status_code == 200 and response.json()["archived"] is True
    channel.refresh_from_db()
    assert channel.archived and not channel.enabled
    assert Message.objects.filter(pk=message.pk).exists()
    listed = [c["id"] for c in client.get("/api/v1/channels/").json()["results"]]
    assert channel.pk not in listed
    archived = client.get("/api/v1/channels/?archived=true").json()["results"]
    assert [c["id"] for c in archived] == [channel.pk]
    assert audited("channel.archived").detail["changes"] == {
        "archived": [False, True],
        "enabled": [True, False],
    }
    refused = patch(client, f"/api/v1/channels/{channel.pk}/", {"enabled": True})
    assert refused.status_code == 400 and "restore it first" in refused.json()["enabled"][0]
    post(client, f"/api/v1/channels/{channel.pk}/restore/")
    channel.refresh_from_db()
    assert not channel.archived and not channel.enabled  # enabling is a choice of its own
    assert audited("channel.restored").detail["changes"] == {"archived": [True, False]}


def test_an_archived_channel_frees_its_port(analyst_user):
    channel = factories.channel(40910)
    client = signed_in(analyst_user)
    post(client, f"/api/v1/channels/{channel.pk}/archive/")
    body = {"name": "successor", "source_config": {"port": 40910}}
    assert post(client, "/api/v1/channels/", body).status_code == 201


def test_the_list_filters_by_tag(viewer_user):
    lab = factories.channel(40911, tags=["lab", "north"])
    factories.channel(40912, tags=["adt"])
    listed = signed_in(viewer_user).get("/api/v1/channels/?tag=lab").json()["results"]
    assert [c["id"] for c in listed] == [lab.pk]


def test_a_channel_that_never_received_a_message_can_be_deleted(analyst_user):
    channel = factories.channel(40913)
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    channel.publish()
    response = signed_in(analyst_user).delete(f"/api/v1/channels/{channel.pk}/")
    assert response.status_code == 204
    assert not Channel.objects.filter(pk=channel.pk).exists()
    event = audited("channel.deleted")
    assert event.target == f"channel:{channel.pk}"
    assert event.detail["changes"]["name"] == [channel.name, None]


def test_a_channel_with_messages_cannot_be_deleted(analyst_user):
    channel = factories.channel(40914)
    Message.objects.create(channel=channel, raw=factories.adt_a01("DEL-1"))
    response = signed_in(analyst_user).delete(f"/api/v1/channels/{channel.pk}/")
    assert response.status_code == 409
    assert "archive it instead" in response.json()["detail"]
    assert Channel.objects.filter(pk=channel.pk).exists()
    assert not AuditEvent.objects.filter(action="channel.deleted").exists()


def test_viewers_and_operators_change_nothing(viewer_user, operator_user):
    channel = factories.channel(40915)
    for user in (viewer_user, operator_user):
        client = signed_in(user)
        assert post(client, f"/api/v1/channels/{channel.pk}/archive/").status_code == 403
        assert client.delete(f"/api/v1/channels/{channel.pk}/").status_code == 403
        clone = {"name": "x", "source_config": {"port": 40916}}
        assert post(client, f"/api/v1/channels/{channel.pk}/clone/", clone).status_code == 403


def test_a_clone_copies_every_configuration_field_of_a_destination(analyst_user):
    """Read from the model, not listed by hand: a field added to Destination later is copied."""
    channel = factories.channel(40917)
    original = factories.fhir_destination(
        channel, "http://127.0.0.1:9/fhir", enabled=False, rate_limit_per_s=4.5, max_attempts=3
    )
    response = post(
        signed_in(analyst_user),
        f"/api/v1/channels/{channel.pk}/clone/",
        {"name": "full copy", "source_config": {"port": 40918}},
    )
    (cloned,) = Channel.objects.get(pk=response.json()["id"]).destinations.all()
    runtime = {"id", "channel", *Destination.RUNTIME}
    fields = [f.attname for f in Destination._meta.concrete_fields if f.name not in runtime]
    assert len(fields) > 10
    for field in fields:
        assert getattr(cloned, field) == getattr(original, field), field
