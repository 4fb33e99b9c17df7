"""A change of a destination's secret alone is audited: "secret changed" and where, never the
value; through the API as through the page. The new secret is what the next send carries (a real
worker, listener and FHIR sink)."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from channels_app.models import Delivery, Destination
from channels_app.sealing import SECRET_MARKER
from console.models import AuditEvent
from tests import factories
from tests.console.test_destination_form import policy
from tests.support import send, signed_in, wait_for

KEY = Fernet.generate_key().decode()
OLD, NEW = "tok-OLD-SECRET-3310", "tok-NEW-SECRET-8812"


def patch(client, destination: Destination, config: dict, query: str = ""):
    return client.patch(
        f"/api/v1/destinations/{destination.pk}/{query}",
        data=json.dumps({"config": config}),
        content_type="application/json",
    )


def updates() -> list[AuditEvent]:
    """The API's changes of destinations, saved to their channel's draft."""
    return list(AuditEvent.objects.filter(action="channel.draft_saved"))


@pytest.mark.django_db(transaction=True)
def test_a_new_bearer_token_alone_is_audited_and_used(
    settings, analyst_user, mllp_port, listener, celery_worker, fhir_sink
):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    channel = factories.channel(mllp_port)
    ehr = factories.fhir_destination(
        channel, fhir_sink.url, config={"base_url": fhir_sink.url, "bearer_token": OLD}
    )
    config = {"base_url": fhir_sink.url, "bearer_token": NEW}
    response = patch(signed_in(analyst_user), ehr, config, "?publish=true")
    assert response.status_code == 200, response.content
    assert response.json()["config"]["bearer_token"] == SECRET_MARKER

    [event] = updates()
    assert event.actor == analyst_user and event.target == f"channel:{channel.pk}"
    changed = [SECRET_MARKER, f"{SECRET_MARKER} (changed)"]
    assert event.detail["changes"] == {"destinations.FHIR sink.config.bearer_token": changed}
    assert event.detail["secrets"] == {
        "destinations.FHIR sink.config.bearer_token": "secret changed"
    }
    published = AuditEvent.objects.get(action="channel.published")
    assert published.detail["changes"] == event.detail["changes"]
    assert published.detail["secrets"] == event.detail["secrets"]
    everything = json.dumps([event.detail, published.detail])
    assert OLD not in everything and NEW not in everything

    listener(channel)
    send(mllp_port, factories.adt_a01("SECRET-ROTATED"))
    wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).exists(),
        what="delivered after the token changed",
    )
    assert fhir_sink.requests[-1]["authorization"] == f"Bearer {NEW}"


@pytest.mark.django_db
def test_the_marker_sent_back_changes_nothing_and_audits_nothing(settings, analyst_user):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    ehr = factories.fhir_destination(
        factories.channel(40701),
        "http://fhir.example/fhir",
        config={"base_url": "http://fhir.example/fhir", "bearer_token": OLD},
    )
    client = signed_in(analyst_user)
    shown = client.get(f"/api/v1/destinations/{ehr.pk}/").json()["config"]
    assert patch(client, ehr, shown).status_code == 200
    assert updates() == []


@pytest.mark.django_db
def test_a_header_value_and_url_password_changes_are_named_without_their_values(
    settings, analyst_user
):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    hook = Destination.objects.create(
        channel=factories.channel(40702),
        name="hook",
        transport="webhook",
        config={"url": "https://svc:pw-OLD-1@hook.example/in", "headers": {"X-Api-Key": OLD}},
    )
    client = signed_in(analyst_user)
    new = {"url": "https://svc:pw-NEW-2@hook.example/in", "headers": {"X-Api-Key": NEW}}
    assert patch(client, hook, new).status_code == 200
    [event] = updates()
    assert event.detail["secrets"] == {
        "destinations.hook.config.headers.X-Api-Key": "secret changed",
        "destinations.hook.config.url": "secret changed",  # its public form is the same
    }
    text = json.dumps(event.detail)
    assert not any(secret in text for secret in (OLD, NEW, "pw-OLD-1", "pw-NEW-2"))


@pytest.mark.django_db
def test_the_page_audits_a_secret_only_change_too(settings, analyst_user):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    hook = Destination.objects.create(
        channel=factories.channel(40703),
        name="hook",
        transport="webhook",
        config={"url": "https://hook.example/in", "auth": {"type": "bearer", "token": OLD}},
    )
    client = signed_in(analyst_user)
    form = {
        **policy(hook),
        "config-url": "https://hook.example/in",
        "config-method": "POST",
        "config-body": "canonical",
        "config-headers": "{}",
        "config-auth__type": "bearer",
        "config-auth__bearer__token": NEW,
    }
    response = client.post(f"/destinations/{hook.pk}/edit/", form, follow=True)
    assert response.status_code == 200
    assert (
        "saved" in response.content.decode() and "nothing changed" not in response.content.decode()
    )
    event = AuditEvent.objects.get(action="channel.draft_saved")
    assert event.detail["changes"] == {
        "destinations.hook.config.auth.token": [SECRET_MARKER, f"{SECRET_MARKER} (changed)"]
    }
    assert NEW not in json.dumps(event.detail)
