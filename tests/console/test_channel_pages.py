"""The Channels pages: create, edit, clone, enable/disable, archive, delete; the source form built
from the source type's schemas, its errors next to the field, its secrets write-only; the list's
counts in a fixed number of queries."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app import drafts
from channels_app.models import Channel, DedupeEntry, Message
from channels_app.sources import opened_source_config
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

TLS = {"cert_file": "/etc/hub/cert.pem", "key_file": "/etc/hub/key.pem"}
CHANNEL = {
    "name": "Lab results",
    "enabled": "on",
    "description": "ORU from the lab",
    "tags": "Lab, north",
    "source_type": "mllp",
    "dedupe_window_s": "86400",
    "max_message_bytes": "1048576",
    "retention_days": "",
}


def field_html(html: str, name: str) -> str:
    """The markup of one field's block (label, input, errors, help)."""
    start = html.index(f'data-field="{name}"')
    return html[start : html.find('data-field="', start + 1)]


def test_an_analyst_creates_an_mllp_channel(analyst_user):
    client = signed_in(analyst_user)
    page = client.get("/channels/new/").content.decode()
    assert 'name="source-port"' in page and 'name="source-ack_mode"' in page
    assert "TCP port senders connect to." in page  # the schema's description is the help
    data = {**CHANNEL, "source-port": "41001", "source-max_connections_per_ip": "20"}
    response = client.post("/channels/new/", data)
    assert response.status_code == 302, response.content.decode()
    channel = Channel.objects.get(name="Lab results")
    assert channel.enabled and channel.tags == ["lab", "north"]
    assert channel.source_config == {"port": 41001}  # defaults are left to the schema
    event = AuditEvent.objects.get(action="channel.created")
    assert event.detail["changes"]["source_config"] == [None, {"port": 41001}]


def test_a_file_source_is_its_own_form(analyst_user, tmp_path):
    client = signed_in(analyst_user)
    fragment = client.get("/channels/new/?source_type=file", HTTP_HX_REQUEST="true")
    assert 'name="source-directory"' in fragment.content.decode()
    assert 'name="source-port"' not in fragment.content.decode()
    data = {**CHANNEL, "source_type": "file", "source-directory": str(tmp_path)}
    assert client.post("/channels/new/", data).status_code == 302
    channel = Channel.objects.get(name="Lab results")
    assert channel.source_type == "file" and channel.source_config == {"directory": str(tmp_path)}


def test_errors_are_shown_next_to_their_field(analyst_user):
    factories.channel(41002, name="ADT in")
    client = signed_in(analyst_user)
    bad = client.post("/channels/new/", {**CHANNEL, "source-port": "70000", "tags": ","})
    html = bad.content.decode()
    assert bad.status_code == 200 and "Nothing was saved" in html
    assert "less than or equal to 65535" in field_html(html, "source-port")
    taken = client.post("/channels/new/", {**CHANNEL, "source-port": "41002"}).content.decode()
    assert "“ADT in” already uses this port" in field_html(taken, "source-port")
    named = client.post("/channels/new/", {**CHANNEL, "name": "ADT in", "source-port": "41003"})
    assert "already exists" in field_html(named.content.decode(), "name")
    assert not Channel.objects.filter(name="Lab results").exists()


def test_secrets_are_write_only_in_the_source_form(analyst_user):
    channel = factories.channel(
        41004,
        name="TLS in",
        source_config={"port": 41004, "tls": {**TLS, "key_password": "hunter22"}},
    )
    sealed = channel.source_config["tls"]["key_password"]
    client = signed_in(analyst_user)
    page = client.get(f"/channels/{channel.pk}/edit/").content.decode()
    assert "hunter22" not in page
    password = field_html(page, "source-tls__key_password")
    assert 'type="password"' in password and "A value is stored" in password
    data = {
        **CHANNEL,
        "name": "TLS in",
        "source-port": "41004",
        "source-tls": "on",
        "source-tls__cert_file": TLS["cert_file"],
        "source-tls__key_file": TLS["key_file"],
        "source-tls__key_password": "",  # blank keeps the stored one
        "source-tls__min_version": "1.3",
    }
    assert client.post(f"/channels/{channel.pk}/edit/", data).status_code == 302
    drafts.publish_draft(channel)
    channel.refresh_from_db()
    assert channel.source_config["tls"]["key_password"] == sealed  # kept, not re-sealed
    assert opened_source_config("mllp", channel.source_config)["tls"]["key_password"] == "hunter22"
    assert channel.source_config["tls"]["min_version"] == "1.3"
    event = AuditEvent.objects.get(action="channel.draft_saved")
    assert "hunter22" not in str(event.detail) and sealed["sealed"] not in str(event.detail)
    assert event.detail["changes"]["tags"] == [[], ["lab", "north"]]


def test_clone_needs_its_own_port_and_starts_disabled(analyst_user):
    channel = factories.channel(41005, name="ORU in")
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    client = signed_in(analyst_user)
    page = client.get(f"/channels/{channel.pk}/clone/").content.decode()
    assert 'value="ORU in (copy)"' in page and 'value="41005"' in page
    same = client.post(f"/channels/{channel.pk}/clone/", {"name": "ORU 2", "source-port": "41005"})
    assert "“ORU in” already uses this port" in field_html(same.content.decode(), "source-port")
    response = client.post(
        f"/channels/{channel.pk}/clone/", {"name": "ORU 2", "source-port": "41006"}
    )
    assert response.status_code == 302
    copy = Channel.objects.get(name="ORU 2")
    assert not copy.enabled and copy.destinations.count() == 1 and copy.port == 41006


def test_enable_disable_archive_restore_from_the_page(analyst_user):
    channel = factories.channel(41007, name="Toggled")
    client = signed_in(analyst_user)
    client.post(f"/channels/{channel.pk}/disable/")
    channel.refresh_from_db()
    assert not channel.enabled
    client.post(f"/channels/{channel.pk}/enable/")
    channel.refresh_from_db()
    assert channel.enabled
    client.post(f"/channels/{channel.pk}/archive/")
    channel.refresh_from_db()
    assert channel.archived and not channel.enabled
    listed = "data-channel-name>Toggled<"
    assert listed not in client.get("/channels/").content.decode()
    assert listed in client.get("/channels/?archived=1").content.decode()
    client.post(f"/channels/{channel.pk}/restore/")
    channel.refresh_from_db()
    assert not channel.archived
    actions = AuditEvent.objects.filter(action__startswith="channel.").order_by("id")
    actions = actions.values_list("action", flat=True)
    assert list(actions) == [
        "channel.updated",
        "channel.updated",
        "channel.archived",
        "channel.restored",
    ]


def test_delete_asks_first_and_only_for_a_channel_without_messages(analyst_user):
    empty = factories.channel(41008, name="Typo")
    used = factories.channel(41009, name="Used")
    Message.objects.create(channel=used, raw=factories.adt_a01("PAGE-DEL"))
    client = signed_in(analyst_user)
    confirm = client.get(f"/channels/{empty.pk}/delete/").content.decode()
    assert "Delete for good" in confirm and Channel.objects.filter(pk=empty.pk).exists()
    assert client.post(f"/channels/{empty.pk}/delete/").status_code == 302
    assert not Channel.objects.filter(pk=empty.pk).exists()
    refused = client.post(f"/channels/{used.pk}/delete/")
    assert refused.status_code == 409 and "Archive it instead" in refused.content.decode()
    assert Channel.objects.filter(pk=used.pk).exists()


def test_the_list_shows_the_last_hour_and_filters_by_tag(viewer_user):
    lab = factories.channel(41010, name="Lab feed", tags=["lab"])
    factories.channel(41011, name="ADT feed", tags=["adt"])
    old = timezone.now() - timedelta(hours=2)
    for n, status in enumerate(["PROCESSED", "ERROR", "RECEIVED"]):
        Message.objects.create(channel=lab, raw=factories.adt_a01(f"H{n}"), status=status)
    stale = Message.objects.create(channel=lab, raw=factories.adt_a01("OLD"), status="ERROR")
    Message.objects.filter(pk=stale.pk).update(received_at=old)
    html = signed_in(viewer_user).get("/channels/?tag=lab").content.decode()
    assert "Lab feed" in html and "ADT feed" not in html
    assert 'data-last-hour="3" data-errors="1"' in html
    assert 'data-queue="1"' in html  # the message still waiting to be processed
    assert 'data-tag="adt"' in html  # every tag in use stays offered


def test_the_list_adds_up_the_duplicates_each_channel_dropped(viewer_user):
    lab, adt = factories.channel(41012, name="Lab feed"), factories.channel(41013, name="ADT")
    now = timezone.now()
    for key, duplicates in (("A", 2), ("B", 0), ("C", 1)):
        DedupeEntry.objects.create(channel=lab, key=key, seen_at=now, duplicates=duplicates)
    DedupeEntry.objects.create(channel=adt, key="A", seen_at=now, duplicates=0)
    html = signed_in(viewer_user).get("/channels/").content.decode()
    assert "3 duplicates dropped" in html and "0 duplicates dropped" in html


def test_the_list_costs_the_same_queries_for_any_number_of_channels(viewer_user):
    client = signed_in(viewer_user)

    def queries_for_the_list() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/channels/").status_code == 200
        return [q["sql"] for q in captured.captured_queries]

    def add_channels(count: int, start: int) -> None:
        for n in range(count):
            channel = factories.channel(start + n, tags=["t"])
            factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
            Message.objects.create(channel=channel, raw=factories.adt_a01(f"Q{start + n}"))
            drafts.save_draft(channel, {**drafts.draft_of(channel), "description": "drafted"})

    add_channels(2, 41100)
    few = queries_for_the_list()
    add_channels(8, 41200)
    many = queries_for_the_list()
    assert len(many) == len(few), "\n".join(many)
    message_queries = [q for q in many if 'FROM "channels_app_message"' in q]
    assert message_queries and not any(re.search(r'"raw"|"canonical"', q) for q in message_queries)


def test_a_tls_listener_without_its_certificate_is_refused_by_the_field(analyst_user):
    channel = factories.channel(41012, name="Plain")
    data = {**CHANNEL, "name": "Plain", "source-port": "41012", "source-tls": "on"}
    response = signed_in(analyst_user).post(f"/channels/{channel.pk}/edit/", data)
    html = response.content.decode()
    assert "needs its certificate" in field_html(html, "source-tls__cert_file")
    assert "needs its private key" in field_html(html, "source-tls__key_file")
    channel.refresh_from_db()
    assert "tls" not in channel.source_config


def test_an_http_source_takes_a_custom_json_map_checked_by_the_field(analyst_user):
    from tests.console.test_channel_json_map import JSON_MAP

    client = signed_in(analyst_user)
    broken = {**JSON_MAP, "rules": [{**JSON_MAP["rules"][0], "source": "%input.x."}]}
    data = {**CHANNEL, "source_type": "http", "source-inbound": "json"}
    refused = client.post("/channels/new/", {**data, "source-json_map": json.dumps(broken)})
    assert "FHIRPath syntax error" in field_html(refused.content.decode(), "source-json_map")
    saved = client.post("/channels/new/", {**data, "source-json_map": json.dumps(JSON_MAP)})
    assert saved.status_code == 302
    channel = Channel.objects.get(name="Lab results")
    assert channel.source_config == {"inbound": "json", "json_map": JSON_MAP}


def test_the_list_shows_the_rules_to_viewers_without_any_edit_control(viewer_user, analyst_user):
    rule = "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()"
    lab = factories.channel(41300, name="Lab feed", route_filter="%messageCode = 'ORU'")
    factories.fhir_destination(lab, "http://127.0.0.1:9/fhir", name="Finals", route_when=rule)
    factories.fhir_destination(lab, "http://127.0.0.1:9/fhir", name="Everything")
    plain = factories.channel(41301, name="ADT feed")

    html = signed_in(viewer_user).get("/channels/").content.decode()
    assert '<code class="rule" data-route-filter>%messageCode = &#x27;ORU&#x27;</code>' in html
    assert html.count("data-route-when>") == 1 and "where(status = &#x27;final&#x27;)" in html
    assert "data-route-when-none" in html  # "Everything" takes every message
    assert html.count("data-route-filter-none") == 1  # ADT feed has no filter
    assert "data-channel-actions" not in html and 'data-action="edit-destination"' not in html
    assert 'data-action="new-channel"' not in html and 'data-action="add-destination"' not in html

    html = signed_in(analyst_user).get("/channels/").content.decode()
    assert f'href="/channels/{plain.pk}/edit/"' in html and 'data-action="add-destination"' in html


def test_the_channel_form_lays_out_the_filter_under_routing(analyst_user):
    lab = factories.channel(41302, name="Lab feed", route_filter="%messageCode = 'ORU'")
    html = signed_in(analyst_user).get(f"/channels/{lab.pk}/edit/").content.decode()
    routing = html[html.index('id="routing-fields"') : html.index('id="source-card"')]
    assert 'name="route_filter"' in routing and "font-monospace" in field_html(
        routing, "route_filter"
    )
    assert 'id="more-fields"' not in html  # nothing left over to lay out


def test_the_list_names_the_types_received_without_a_map(viewer_user):
    from channels_app.pipeline import process

    channel = factories.channel(41020, name="Mixed feed")
    unmapped = b"MSH|^~\\&|A|B|C|D|20240101||ZZZ^Z01|%s|P|2.5.1\rZZZ|1\r"
    ids = [
        Message.objects.create(
            channel=channel, raw=unmapped % f"U{n}".encode(), message_type="ZZZ^Z01"
        ).pk
        for n in range(3)
    ]
    adt = Message.objects.create(
        channel=channel, raw=factories.adt_a01("M1"), message_type="ADT^A01"
    )
    ids.append(adt.pk)
    process.process_messages(ids)
    assert Message.objects.filter(error_class="UnsupportedMessageType").count() == 3
    html = signed_in(viewer_user).get("/channels/").content.decode()
    [listed] = re.findall(r"<dd[^>]*data-unmapped>(.*?)</dd>", html, re.S)
    assert "ZZZ^Z01 × 3" in listed and "ADT" not in listed
    assert f"?channel={channel.pk}&amp;type=ZZZ%5EZ01&amp;status=ERROR" in listed
