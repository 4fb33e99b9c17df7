"""Credentials outside ``bearer_token``: a URL's ``user:password@`` and HTTP header values are
secrets like any other (sealed at rest, write-only, shown as a marker to every role), and the
transport still gets them whole: a real FHIR sink receives the header and the URL's credentials."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from channels_app import drafts
from channels_app.models import Delivery, Destination
from channels_app.sealing import SECRET_MARKER, open_config
from tests import factories
from tests.console.test_destination_form import Inputs, policy
from tests.support import send, signed_in, wait_for

KEY = Fernet.generate_key().decode()
PASSWORD = "pw-IN-URL-5521"
API_KEY = "key-IN-HEADER-9034"


def with_credentials(url: str) -> dict:
    return {
        "base_url": url.replace("http://", f"http://svc:{PASSWORD}@"),
        "headers": {"X-Api-Key": API_KEY, "X-Source": "hub"},
    }


def stored_text(destination: Destination) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT config::text FROM channels_app_destination WHERE id = %s", [destination.pk]
        )
        return cursor.fetchone()[0]


@pytest.fixture
def ehr(db, settings):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    config = with_credentials("http://fhir.example/fhir")
    return factories.fhir_destination(factories.channel(40801), "", config=config)


@pytest.mark.parametrize("role", ["viewer", "operator", "analyst", "admin"])
def test_every_role_sees_markers_not_credentials(users, ehr, role):
    client = signed_in(users[role])
    listed = client.get("/api/v1/destinations/")
    one = client.get(f"/api/v1/destinations/{ehr.pk}/")
    text = listed.content.decode() + one.content.decode()
    assert listed.status_code == one.status_code == 200
    assert PASSWORD not in text and API_KEY not in text
    config = one.json()["config"]
    assert config["base_url"] == f"http://{SECRET_MARKER}@fhir.example/fhir"
    assert config["headers"] == {"X-Api-Key": SECRET_MARKER, "X-Source": SECRET_MARKER}


def test_they_are_sealed_at_rest_and_kept_out_of_snapshots(ehr):
    text = stored_text(ehr)
    assert PASSWORD not in text and API_KEY not in text
    assert json.loads(text)["base_url"]["shown"] == f"http://{SECRET_MARKER}@fhir.example/fhir"
    snapshot = json.dumps(ehr.channel.publish().snapshot)
    assert PASSWORD not in snapshot and API_KEY not in snapshot
    opened = open_config(ehr.transport, ehr.config)
    assert opened == with_credentials("http://fhir.example/fhir")


def test_without_a_key_they_are_still_masked(db, settings):
    settings.HUB_ENCRYPTION_KEYS = []
    config = with_credentials("http://fhir.example/fhir")
    plain = factories.fhir_destination(factories.channel(40802), "", config=config)
    shown = json.dumps(plain.public_config) + json.dumps(plain.channel.snapshot())
    assert PASSWORD not in shown and API_KEY not in shown


@pytest.mark.parametrize(
    "url",
    [
        "http:svc:p4ss-WORD@fhir.example/fhir",  # spellings the schema accepts as well
        "http:///svc:p4ss-WORD@fhir.example/fhir",
        "HTTP:\\\\svc:p4ss-WORD@fhir.example/fhir",
        "http://svc:p4ss[-WORD@fhir.example/fhir",  # one urlsplit refuses
        "http://svc:p4ss-WORD@x@fhir.example/fhir",
    ],
)
def test_every_spelling_of_url_credentials_is_masked(db, settings, url):
    settings.HUB_ENCRYPTION_KEYS = []
    d = factories.fhir_destination(factories.channel(40803), "", config={"base_url": url})
    shown = d.public_config["base_url"]
    assert "p4ss" not in shown and SECRET_MARKER in shown, shown


def test_sending_the_markers_back_keeps_them_and_new_values_replace_them(ehr, analyst_user):
    client = signed_in(analyst_user)
    shown = client.get(f"/api/v1/destinations/{ehr.pk}/").json()["config"]
    shown["base_url"] = shown["base_url"].replace("fhir.example", "fhir2.example")  # host only
    shown["headers"]["X-Source"] = "hub-2"
    response = client.patch(
        f"/api/v1/destinations/{ehr.pk}/?publish=true",
        data=json.dumps({"config": shown}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    ehr.refresh_from_db()
    opened = open_config(ehr.transport, ehr.config)
    assert opened["base_url"] == f"http://svc:{PASSWORD}@fhir2.example/fhir"
    assert opened["headers"] == {"X-Api-Key": API_KEY, "X-Source": "hub-2"}


def test_the_form_never_renders_them_and_keeps_them_when_saved(ehr, analyst_user):
    client = signed_in(analyst_user)
    html = client.get(f"/destinations/{ehr.pk}/edit/").content.decode()
    assert PASSWORD not in html and API_KEY not in html
    shown = Inputs(html).controls
    assert shown["config-base_url"]["value"] == f"http://{SECRET_MARKER}@fhir.example/fhir"
    # Saved as shown (a timeout changed): the stored credentials stay as they were.
    form = {
        **policy(ehr, timeout_s=7),
        "config-base_url": shown["config-base_url"]["value"],
        "config-mode": "transaction",
        "config-bearer_token": "",
        "config-headers": shown["config-headers"]["text"],
    }
    assert client.post(f"/destinations/{ehr.pk}/edit/", form).status_code == 302
    drafts.publish_draft(ehr.channel)
    ehr.refresh_from_db()
    assert ehr.timeout_s == 7
    assert open_config(ehr.transport, ehr.config) == with_credentials("http://fhir.example/fhir")


@pytest.mark.django_db(transaction=True)
def test_the_sink_receives_the_url_credentials_and_the_header(
    settings, mllp_port, listener, celery_worker, fhir_sink
):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, "", config=with_credentials(fhir_sink.url))
    listener(channel)
    send(mllp_port, factories.adt_a01("CREDS-1"))
    wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).exists(),
        what="delivered with credentials from the URL and a header",
    )
    request = fhir_sink.requests[-1]
    assert (
        request["authorization"] == "Basic " + base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
    )
    assert request["api_key"] == API_KEY


def test_a_url_that_does_not_parse_is_refused_naming_the_field(ehr, analyst_user):
    response = signed_in(analyst_user).patch(
        f"/api/v1/destinations/{ehr.pk}/",
        data=json.dumps({"config": {"base_url": "http://u:p@[zz/"}}),
        content_type="application/json",
    )
    assert response.status_code == 400 and "base_url" in response.content.decode()
