"""Config as code over the API and in the console: analysts download the YAML file (one channel or
all), admins import one (a dry run shows the changes, applying publishes when asked), a refused
file answers every problem with its path and applies nothing; viewers and operators get neither,
analysts cannot import. Each export and import is audited."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from channels_app import config_io
from channels_app.config_io import export_yaml
from channels_app.models import Channel, Destination
from console import config_code
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel():
    channel = factories.channel(40881, name="ADT demo")
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="fhir")
    factories.channel(40882, name="Other")
    return channel


def test_analysts_export_one_channel_or_all_through_the_api(channel, analyst_user):
    client = signed_in(analyst_user)
    one = client.get(f"/api/v1/channels/export/?channel={channel.pk}")
    assert one.status_code == 200 and one["Content-Type"] == "application/yaml; charset=utf-8"
    assert one.content.decode() == export_yaml([channel])
    every = client.get("/api/v1/channels/export/").content.decode()
    assert every == export_yaml(Channel.objects.all())
    assert client.get("/api/v1/channels/export/?channel=x").status_code == 400
    assert client.get("/api/v1/channels/export/?channel=999999").status_code == 404
    events = AuditEvent.objects.filter(action="channels.exported", actor=analyst_user)
    assert [e.detail["via"] for e in events] == ["api", "api"]


@pytest.mark.parametrize("role", ["viewer_user", "operator_user"])
def test_below_analyst_nothing_is_exported(channel, role, request):
    client = signed_in(request.getfixturevalue(role))
    assert client.get("/api/v1/channels/export/").status_code == 403
    assert client.get(f"/channels/{channel.pk}/export/").status_code == 403


def post_import(client, document: str, **flags):
    return client.post(
        "/api/v1/channels/import/", {"document": document, **flags}, content_type="application/json"
    )


def test_an_admin_dry_runs_then_applies_and_publishes_through_the_api(channel, hub_admin_user):
    client = signed_in(hub_admin_user)
    document = export_yaml([channel]).replace("timeout_s: 5.0", "timeout_s: 12.0")
    dry = post_import(client, document, dry_run=True)
    assert dry.status_code == 200, dry.content
    [planned] = dry.json()["channels"]
    assert planned["changes"] == [
        {
            "path": "channels[ADT demo].destinations[fhir].timeout_s",
            "kind": "changed",
            "before": 5.0,
            "after": 12.0,
        }
    ]
    assert Destination.objects.get(name="fhir").timeout_s == 5.0

    applied = post_import(client, document, publish=True)
    assert applied.status_code == 200, applied.content
    [result] = applied.json()["channels"]
    assert (result["id"], result["version"]) == (channel.pk, 1)
    assert Destination.objects.get(name="fhir").timeout_s == 12.0
    event = AuditEvent.objects.get(action="channel.imported")
    assert (event.actor, event.detail["via"], event.detail["version"]) == (hub_admin_user, "api", 1)


def test_a_refused_file_answers_each_problem_and_applies_nothing(channel, hub_admin_user):
    document = export_yaml([channel]).replace("timeout_s: 5.0", "timeout: 5.0")
    document = document.replace("port: 40881", "port: nine")
    response = post_import(signed_in(hub_admin_user), document, publish=True)
    assert response.status_code == 400
    assert response.json()["problems"] == [
        {
            "path": "channels[ADT demo].source_config.port",
            "reason": "Input should be a valid integer, unable to parse string as an integer",
        },
        {
            "path": "channels[ADT demo].destinations[fhir].timeout",
            "reason": "unknown key; did you mean timeout_s?",
        },
    ]
    assert channel.versions.count() == 0
    assert not AuditEvent.objects.filter(action="channel.imported").exists()


def test_analysts_cannot_import(channel, analyst_user):
    response = post_import(signed_in(analyst_user), export_yaml([channel]), dry_run=True)
    assert response.status_code == 403
    assert signed_in(analyst_user).get("/channels/import/").status_code == 403


def test_the_channels_page_offers_export_to_analysts_and_import_to_admins(
    channel, analyst_user, hub_admin_user
):
    as_analyst = signed_in(analyst_user).get("/channels/").content.decode()
    assert 'data-action="export-channels"' in as_analyst
    assert f'href="/channels/{channel.pk}/export/"' in as_analyst
    assert 'data-action="import-channels"' not in as_analyst
    as_admin = signed_in(hub_admin_user).get("/channels/").content.decode()
    assert 'data-action="import-channels"' in as_admin


def test_the_export_pages_download_yaml(channel, analyst_user):
    client = signed_in(analyst_user)
    one = client.get(f"/channels/{channel.pk}/export/")
    assert one["Content-Disposition"] == 'attachment; filename="adt-demo.yaml"'
    assert one.content.decode() == export_yaml([channel])
    every = client.get("/channels/export/")
    assert every["Content-Disposition"] == 'attachment; filename="channels.yaml"'
    assert every.content.decode() == export_yaml(Channel.objects.all())


def test_the_import_page_previews_then_applies(channel, hub_admin_user):
    client = signed_in(hub_admin_user)
    document = export_yaml([channel]).replace("route_filter: ''", "route_filter: 'true'")
    preview = client.post("/channels/import/", {"step": "preview", "document": document})
    page = preview.content.decode()
    assert preview.status_code == 200
    assert 'data-change="channels[ADT demo].route_filter"' in page
    assert "&quot;&quot;" in page and "&quot;true&quot;" in page  # before -> after
    channel.refresh_from_db()
    assert channel.route_filter == ""

    applied = client.post(
        "/channels/import/", {"step": "apply", "document": document, "publish": "on"}
    )
    assert applied.status_code == 302 and applied.url == "/channels/"
    channel.refresh_from_db()
    assert channel.route_filter == "true" and channel.current_version().number == 1
    listed = client.get("/channels/").content.decode()
    assert "Imported “ADT demo” (version 1)." in listed


def test_the_import_page_lists_why_a_file_is_refused(channel, hub_admin_user):
    document = export_yaml([channel]).replace("route_filter: ''", "route_filter: 'x.('")
    response = signed_in(hub_admin_user).post(
        "/channels/import/", {"step": "apply", "document": document, "publish": "on"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-problem="channels[ADT demo].route_filter"' in page
    assert "The file is refused: nothing was applied" in page
    channel.refresh_from_db()
    assert channel.route_filter == ""


@pytest.mark.django_db(transaction=True)
def test_an_import_waits_for_the_one_under_way_and_then_sees_what_it_left(hub_admin_user):
    made = factories.channel(40883, name="Feed")
    document = export_yaml([made])
    made.delete()
    holding, release = threading.Event(), threading.Event()

    def first_import_under_way():  # another importer holds the lock until told to commit
        with transaction.atomic():
            config_io.lock_imports()
            holding.set()
            release.wait(10)
        connection.close()

    def second_import(results):
        results.append(
            config_code.imported(None, document, publish=True, via="t", user=hub_admin_user)
        )
        connection.close()

    first, results = threading.Thread(target=first_import_under_way), []
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=second_import, args=(results,))
    second.start()
    second.join(0.5)
    assert second.is_alive() and not Channel.objects.filter(name="Feed").exists()
    release.set()
    first.join(10)
    second.join(10)
    [applied] = results[0]
    assert applied.plan.new and Channel.objects.filter(name="Feed").count() == 1
    again = config_code.imported(None, document, publish=True, via="t", user=hub_admin_user)
    assert not again[0].plan.new and not again[0].plan.changes  # planned against what is there
