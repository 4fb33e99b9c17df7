"""Destination secrets: sealed in Destination.config, opened only for the transport, write-only
for forms and the API, never in a channel snapshot (versions, exports) nor in a log line."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test import override_settings

from channels_app.models import Delivery, Destination
from channels_app.pipeline import deliver
from channels_app.sealing import SECRET_MARKER, public_config, secret_fields
from tests import factories
from tests.console import test_logs_carry_no_phi
from tests.support import send, wait_for

logs = test_logs_carry_no_phi.logs  # the fixture that captures every log line
KEY = Fernet.generate_key().decode()
TOKEN = "tok-SECRETVALUE-4471"


def stored_config(destination: Destination) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT config::text FROM channels_app_destination WHERE id = %s", [destination.pk]
        )
        return cursor.fetchone()[0]


@pytest.fixture
def destination(db, settings):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    channel = factories.channel(40201)
    return factories.fhir_destination(
        channel,
        "http://fhir.example/fhir",
        config={"base_url": "http://fhir.example/fhir", "bearer_token": TOKEN},
    )


def test_the_schema_declares_which_fields_are_secret():
    assert secret_fields("fhir_rest") == {
        "bearer_token": "value",
        "client_secret": "value",  # oauth2.client_secret
        "base_url": "userinfo",  # https://user:password@...
        "token_url": "userinfo",
        "headers": "values",  # every header's value
    }
    assert secret_fields("webhook") == {
        "token": "value",  # inside auth
        "password": "value",
        "url": "userinfo",
        "headers": "values",
    }
    assert secret_fields("no-such-transport") == {}


def test_a_secret_is_sealed_in_the_database(destination):
    text = stored_config(destination)
    assert TOKEN not in text
    assert json.loads(text)["bearer_token"]["sealed"].startswith("gAAAAA")  # a Fernet token
    assert json.loads(text)["base_url"] == "http://fhir.example/fhir"  # the rest stays readable


def test_the_transport_gets_the_opened_secret(destination):
    destination.refresh_from_db()
    transport = deliver._transport(
        destination.transport, json.dumps(destination.config, sort_keys=True)
    )
    assert transport.config.bearer_token.get_secret_value() == TOKEN


def test_snapshots_and_public_config_show_a_marker_only(destination):
    channel = destination.channel
    snapshot = channel.snapshot()
    assert TOKEN not in json.dumps(snapshot) and "sealed" not in json.dumps(snapshot)
    assert snapshot["destinations"][0]["config"]["bearer_token"] == SECRET_MARKER
    version = channel.publish()
    assert TOKEN not in json.dumps(version.snapshot)
    assert public_config(destination) == {
        "base_url": "http://fhir.example/fhir",
        "bearer_token": SECRET_MARKER,
    }


def test_an_unset_secret_shows_as_none(db, settings):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    plain = factories.fhir_destination(factories.channel(40202), "http://fhir.example/fhir")
    assert public_config(plain) == {"base_url": "http://fhir.example/fhir"}


def test_secrets_are_write_only_a_blank_or_the_marker_keeps_the_stored_one(destination):
    destination.set_config({"base_url": "http://other.example/fhir", "bearer_token": ""})
    destination.save()
    destination.set_config({"base_url": "http://other.example/fhir", "bearer_token": SECRET_MARKER})
    destination.save()
    destination.refresh_from_db()
    transport = deliver._transport("fhir_rest", json.dumps(destination.config))
    assert transport.config.bearer_token.get_secret_value() == TOKEN
    assert str(transport.config.base_url).startswith("http://other.example")
    destination.set_config({"base_url": "http://other.example/fhir", "bearer_token": "tok-new"})
    destination.save()
    destination.refresh_from_db()
    transport = deliver._transport("fhir_rest", json.dumps(destination.config))
    assert transport.config.bearer_token.get_secret_value() == "tok-new"


def test_without_a_key_the_secret_is_still_masked_everywhere(db, settings):
    settings.HUB_ENCRYPTION_KEYS = []
    d = factories.fhir_destination(
        factories.channel(40203),
        "http://fhir.example/fhir",
        config={"base_url": "http://fhir.example/fhir", "bearer_token": TOKEN},
    )
    assert TOKEN not in json.dumps(d.channel.snapshot()) and TOKEN not in json.dumps(
        public_config(d)
    )


@pytest.mark.django_db(transaction=True)
@override_settings(DEBUG=True)  # every query logged with its parameters
def test_a_secret_reaches_no_log_line(
    settings, mllp_port, listener, celery_worker, fhir_sink, logs
):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    channel = factories.channel(mllp_port)
    factories.fhir_destination(
        channel, fhir_sink.url, config={"base_url": fhir_sink.url, "bearer_token": TOKEN}
    )
    listener(channel)
    send(mllp_port, factories.adt_a01("SECRET-1"))
    wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).exists(),
        what="delivered with a sealed bearer token",
    )
    text = logs()
    assert text  # the capture saw the run
    assert TOKEN not in text


def test_a_secret_nested_in_the_schema_is_sealed_too(db, settings):
    settings.HUB_ENCRYPTION_KEYS = [KEY]
    config = {"url": "http://hook.example/in", "auth": {"type": "bearer", "token": TOKEN}}
    d = Destination.objects.create(
        channel=factories.channel(40204), name="hook", transport="webhook", config=config
    )
    assert TOKEN not in stored_config(d)
    assert public_config(d)["auth"] == {"type": "bearer", "token": SECRET_MARKER}
    d.set_config({"url": "http://hook.example/v2", "auth": {"type": "bearer", "token": ""}})
    d.save()
    d.refresh_from_db()
    transport = deliver._transport("webhook", json.dumps(d.config))
    assert transport.config.auth.token.get_secret_value() == TOKEN
