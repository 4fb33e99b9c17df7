"""The API behaves like the pages: PHI masked unless an operator reveals (audited), changes
audited with their diff, destination secrets write-only."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from channels_app.models import Destination, Message
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def message():
    channel = factories.channel(40401)
    canonical = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient", "name": [{"family": "WOJCIECHOWSKA"}]}}],
    }
    return Message.objects.create(
        channel=channel,
        raw=factories.adt_a01("API-PHI", family="WOJCIECHOWSKA", mrn="MRN-4242"),
        canonical=canonical,
        message_type="ADT^A01",
        control_id="API-PHI",
        status=Message.Status.PROCESSED,
        error_detail="PID-7 value 'WOJCIECHOWSKA' looks odd",
    )


def test_viewers_get_metadata_and_masked_bodies(viewer_user, message):
    client = signed_in(viewer_user)
    listed = client.get("/api/v1/messages/?status=PROCESSED").json()
    assert [m["control_id"] for m in listed["results"]] == ["API-PHI"]
    everything = json.dumps(listed) + client.get(f"/api/v1/messages/{message.pk}/").content.decode()
    body = client.get(f"/api/v1/messages/{message.pk}/body/")
    assert body.status_code == 200 and body.json()["revealed"] is False
    everything += body.content.decode()
    assert "WOJCIECHOWSKA" not in everything and "MRN-4242" not in everything
    assert "MSH|" in body.json()["raw"]  # the structure is still there to debug with
    assert not AuditEvent.objects.filter(action="phi.reveal").exists()


def test_operators_reveal_by_post_and_it_is_audited(operator_user, message):
    client = signed_in(operator_user)
    revealed = client.post(f"/api/v1/messages/{message.pk}/reveal/").json()
    assert revealed["revealed"] is True and "WOJCIECHOWSKA" in revealed["raw"]
    assert revealed["canonical"]["entry"][0]["resource"]["name"][0]["family"] == "WOJCIECHOWSKA"
    event = AuditEvent.objects.get(action="phi.reveal")
    assert event.actor_name == "operator" and event.target == f"message:{message.pk}"


def test_changing_a_channel_is_audited_with_its_diff(analyst_user):
    channel = factories.channel(40402)
    client = signed_in(analyst_user)
    response = client.patch(
        f"/api/v1/channels/{channel.pk}/",
        {"description": "lab feed", "dedupe_window_s": 60},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="channel.draft_saved")
    assert event.detail["changes"]["description"] == ["", "lab feed"]
    assert event.detail["changes"]["dedupe_window_s"] == [86400, 60]
    assert event.actor_name == "analyst"
    client.patch(
        f"/api/v1/channels/{channel.pk}/",
        {"description": "lab feed"},
        content_type="application/json",
    )
    assert AuditEvent.objects.filter(action="channel.draft_saved").count() == 1  # nothing changed


def test_destination_secrets_are_write_only(analyst_user):
    channel = factories.channel(40403)
    client = signed_in(analyst_user)
    created = client.post(
        "/api/v1/destinations/",
        {
            "channel": channel.pk,
            "name": "EHR",
            "transport": "fhir_rest",
            "config": {
                "base_url": "https://ehr.example/fhir",
                "bearer_token": "s3cret-token-value",
            },
        },
        content_type="application/json",
        QUERY_STRING="publish=true",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    shown = client.get(f"/api/v1/destinations/{pk}/").content.decode()
    audit = json.dumps(list(AuditEvent.objects.values_list("detail", flat=True)))
    assert "s3cret-token-value" not in shown + created.content.decode() + audit
    # Changing something else keeps the secret; the marker sent back keeps it too.
    config = client.get(f"/api/v1/destinations/{pk}/").json()["config"]
    client.patch(
        f"/api/v1/destinations/{pk}/?publish=true",
        {"config": {**config, "base_url": "https://ehr2.example/fhir"}},
        content_type="application/json",
    )
    from channels_app.sealing import open_config

    stored = Destination.objects.get(pk=pk)
    opened = open_config(stored.transport, stored.config)
    assert opened["bearer_token"] == "s3cret-token-value"
    assert opened["base_url"] == "https://ehr2.example/fhir"
    diff = (
        AuditEvent.objects.filter(action="channel.published").order_by("-id")[0].detail["changes"]
    )
    assert list(diff) == ["destinations.EHR.config.base_url"] and "s3cret" not in json.dumps(diff)


def test_a_bad_destination_config_names_the_field(analyst_user):
    channel = factories.channel(40404)
    response = signed_in(analyst_user).post(
        "/api/v1/destinations/",
        {"channel": channel.pk, "name": "x", "transport": "fhir_rest", "config": {"base_url": 7}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "base_url" in response.json()["config"][0]


def test_publish_is_for_admins_and_audited(hub_admin_user, analyst_user):
    channel = factories.channel(40405)
    assert (
        signed_in(analyst_user).post(f"/api/v1/channels/{channel.pk}/publish/").status_code == 403
    )
    response = signed_in(hub_admin_user).post(f"/api/v1/channels/{channel.pk}/publish/")
    assert response.status_code == 200 and response.json()["current_version"] == 1
    assert AuditEvent.objects.get(action="channel.published").detail == {"version": 1}


def test_the_schema_is_served_to_viewers(viewer_user):
    response = signed_in(viewer_user).get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert "/api/v1/messages/{id}/reveal/" in paths and "/api/v1/tokens/" in paths


def test_metrics_are_read_with_a_viewer_token():
    from datetime import timedelta

    from console import tokens
    from console.roles import Role

    channel = factories.channel(40406)
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    message = Message.objects.create(channel=channel, raw=factories.adt_a01("MET-1"))
    message.deliveries.create(destination=destination)
    issued = tokens.issue(tokens.service_account("prom"), Role.VIEWER, lifetime=timedelta(days=1))
    response = Client(HTTP_AUTHORIZATION=f"Bearer {issued.secret}").get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    label = f'channel="{channel.name}",destination="EHR"'
    assert f'hub_deliveries_open{{{label},status="PENDING"}} 1.0' in text
    assert f"hub_destination_breaker_open{{{label}}} 0.0" in text
    assert Client().get("/metrics").status_code == 401


@pytest.mark.django_db
def test_the_api_root_answers_an_index(client, viewer_user):
    client.force_login(viewer_user)
    index = client.get("/api/v1/").json()
    assert index["schema"].endswith("/api/v1/schema/") and index["docs"].endswith("/api/docs/")
    assert index["collections"]["messages"].endswith("/api/v1/messages/")
    assert set(index["collections"]) >= {"channels", "destinations", "deliveries", "replay-jobs"}
    for url in index["collections"].values():
        assert client.get(url).status_code in (200, 403)  # each is a real route
    client.logout()
    assert client.get("/api/v1/").status_code == 401
