"""A channel source's secrets (an MLLP listener's ``tls.key_password``): sealed in
Channel.source_config like a destination's, opened only where the source runs, write-only in the
form and the API, kept byte-identical by an unrelated edit, re-sealed by rotate_keys."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from django.db import connection

from adapters.transports.mllp import MLLPClient, TLSConfig
from channels_app import sealing
from channels_app.models import Channel, Message
from channels_app.sealing import SECRET_MARKER
from channels_app.sources import opened_source_config
from channels_app.sources.supervisor import plan_for
from console.models import AuditEvent
from tests import factories
from tests.channels_app.test_mllp_tls import issue, make_ca, msa
from tests.support import signed_in

PASSWORD = "pem-PASSWORD-8812"
TLS = {"cert_file": "/etc/hub/cert.pem", "key_file": "/etc/hub/key.pem"}


def stored_row(channel: Channel) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT source_config::text FROM channels_app_channel WHERE id = %s", [channel.pk]
        )
        return cursor.fetchone()[0]


def sealed_password(channel: Channel) -> dict:
    channel.refresh_from_db()
    return channel.source_config["tls"]["key_password"]


def opened_password(channel: Channel) -> str:
    channel.refresh_from_db()
    return opened_source_config("mllp", channel.source_config)["tls"]["key_password"]


def api_channel(analyst_user, port: int) -> Channel:
    body = {
        "name": f"TLS in {port}",
        "source_type": "mllp",
        "source_config": {"port": port, "tls": {**TLS, "key_password": PASSWORD}},
    }
    response = signed_in(analyst_user).post("/api/v1/channels/", body, "application/json")
    assert response.status_code == 201, response.content
    return Channel.objects.get(pk=response.json()["id"])


@pytest.mark.django_db
def test_the_password_is_sealed_in_the_row_and_shown_as_the_marker(analyst_user):
    channel = api_channel(analyst_user, 41201)
    row = stored_row(channel)
    assert PASSWORD not in row and '"sealed"' in row
    assert opened_password(channel) == PASSWORD
    client = signed_in(analyst_user)
    shown = client.get(f"/api/v1/channels/{channel.pk}/").json()["source_config"]
    assert shown["tls"]["key_password"] == SECRET_MARKER
    page = client.get(f"/channels/{channel.pk}/edit/").content.decode()
    assert PASSWORD not in page and "A value is stored" in page
    assert sealed_password(channel)["sealed"] not in page  # nor its ciphertext


@pytest.mark.django_db
def test_an_unrelated_edit_leaves_the_ciphertext_as_it_was(analyst_user):
    channel = api_channel(analyst_user, 41202)
    before = sealed_password(channel)
    client = signed_in(analyst_user)
    shown = client.get(f"/api/v1/channels/{channel.pk}/").json()["source_config"]
    changed = {"source_config": {**shown, "idle_timeout_s": 30}}
    response = client.patch(
        f"/api/v1/channels/{channel.pk}/?publish=true", changed, "application/json"
    )
    assert response.status_code == 200, response.content
    assert sealed_password(channel) == before
    assert channel.source_config["idle_timeout_s"] == 30
    settings_key = plan_for(channel).settings_key
    channel.description = "not a source setting"
    channel.save()
    assert plan_for(Channel.objects.get(pk=channel.pk)).settings_key == settings_key


@pytest.mark.django_db
def test_a_new_password_is_sealed_anew(analyst_user):
    channel = api_channel(analyst_user, 41203)
    before = sealed_password(channel)
    client = signed_in(analyst_user)
    shown = client.get(f"/api/v1/channels/{channel.pk}/").json()["source_config"]
    changed = {"source_config": {**shown, "tls": {**shown["tls"], "key_password": "other-pw"}}}
    response = client.patch(
        f"/api/v1/channels/{channel.pk}/?publish=true", changed, "application/json"
    )
    assert response.status_code == 200, response.content
    assert sealed_password(channel) != before and "other-pw" not in stored_row(channel)
    assert opened_password(channel) == "other-pw"


@pytest.mark.django_db
def test_a_password_only_change_is_audited_as_a_changed_secret(analyst_user):
    channel = api_channel(analyst_user, 41205)
    client = signed_in(analyst_user)
    shown = client.get(f"/api/v1/channels/{channel.pk}/").json()["source_config"]
    unrelated = {"source_config": {**shown, "idle_timeout_s": 45}}
    client.patch(f"/api/v1/channels/{channel.pk}/?publish=true", unrelated, "application/json")
    changed = {"source_config": {**shown, "tls": {**shown["tls"], "key_password": "new-pw-7"}}}
    client.patch(f"/api/v1/channels/{channel.pk}/?publish=true", changed, "application/json")
    events = AuditEvent.objects.filter(target=f"channel:{channel.pk}").order_by("id")
    first, second = events.filter(action="channel.draft_saved")
    assert "secrets" not in first.detail
    assert second.detail["secrets"] == {"source_config.tls.key_password": "secret changed"}
    published = events.filter(action="channel.published").last()
    assert published.detail["secrets"] == second.detail["secrets"]
    everything = str([e.detail for e in events])
    assert "new-pw-7" not in everything and PASSWORD not in everything


@pytest.mark.django_db
def test_a_version_keeps_the_password_sealed_and_a_rollback_restores_it(
    analyst_user, hub_admin_user
):
    channel = api_channel(analyst_user, 41204)
    first = channel.publish()
    assert PASSWORD not in str(first.snapshot)
    assert first.snapshot["source_config"]["tls"]["key_password"] == sealed_password(channel)
    channel.source_config = {**channel.source_config, "tls": {**TLS, "key_password": "later-pw"}}
    channel.save()
    channel.publish()
    client = signed_in(analyst_user)
    [later, earlier] = client.get(f"/api/v1/channels/{channel.pk}/versions/").json()
    for version in (later, earlier):
        assert version["snapshot"]["source_config"]["tls"]["key_password"] == SECRET_MARKER
    url = f"/api/v1/channels/{channel.pk}/rollback/"
    response = signed_in(hub_admin_user).post(url, {"version": first.number}, "application/json")
    assert response.status_code == 200, response.content
    assert PASSWORD not in stored_row(channel) and opened_password(channel) == PASSWORD
    audited = AuditEvent.objects.get(action="channel.rolled_back").detail
    assert "sealed" not in str(audited) and PASSWORD not in str(audited)


@pytest.mark.django_db
def test_rotate_keys_reseals_a_source_secret(settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.HUB_ENCRYPTION_KEYS = [old_key]
    channel = factories.channel(
        41205, source_config={"port": 41205, "tls": {**TLS, "key_password": PASSWORD}}
    )
    plain = factories.channel(41206)
    plain_row = stored_row(plain)
    in_clear = {"port": 41207, "tls": {**TLS, "key_password": PASSWORD}}  # stored before this
    written_in_clear = factories.channel(41207)
    Channel.objects.filter(pk=written_in_clear.pk).update(source_config=in_clear)
    before = sealed_password(channel)

    settings.HUB_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_keys", stdout=out)
    assert "channel sources: 2 re-sealed" in out.getvalue()
    assert sealed_password(channel) != before and stored_row(plain) == plain_row
    assert PASSWORD not in stored_row(written_in_clear)

    settings.HUB_ENCRYPTION_KEYS = [new_key]  # the old key dropped: the new one opens it
    assert opened_password(channel) == opened_password(written_in_clear) == PASSWORD
    settings.HUB_ENCRYPTION_KEYS = [old_key]  # and the old key alone no longer does
    with pytest.raises(sealing.SealError):
        opened_password(channel)


@pytest.mark.django_db
def test_rotate_keys_reseals_the_versions_so_a_rollback_still_opens_them(settings):
    from channels_app.models import ChannelVersion

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.HUB_ENCRYPTION_KEYS = [old_key]
    channel = factories.channel(
        41208, source_config={"port": 41208, "tls": {**TLS, "key_password": PASSWORD}}
    )
    sealed = channel.publish()
    in_clear = {
        **channel.snapshot(),
        "source_config": {"port": 41208, "tls": {**TLS, "key_password": PASSWORD}},
    }
    recorded_in_clear = ChannelVersion.objects.create(channel=channel, number=2, snapshot=in_clear)

    settings.HUB_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_keys", stdout=out)
    assert "channel versions: 2 re-sealed" in out.getvalue()

    settings.HUB_ENCRYPTION_KEYS = [new_key]  # the old key dropped
    for version in (sealed, recorded_in_clear):
        version.refresh_from_db()
        assert PASSWORD not in str(version.snapshot)
        config = opened_source_config("mllp", version.snapshot["source_config"])
        assert config["tls"]["key_password"] == PASSWORD


def encrypted_key(key_file: Path, password: str) -> Path:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    locked = key_file.with_name("locked.key")
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    return locked


@pytest.mark.django_db(transaction=True)
def test_a_tls_listener_starts_with_its_sealed_password(listener, mllp_port, tmp_path):
    ca = make_ca(tmp_path, "hub-test-ca")
    cert_file, key_file = issue(ca, tmp_path, "listener", server=True)
    tls = {
        "cert_file": str(cert_file),
        "key_file": str(encrypted_key(key_file, PASSWORD)),
        "key_password": PASSWORD,
    }
    channel = factories.channel(
        mllp_port, source_config={"host": "127.0.0.1", "port": mllp_port, "tls": tls}
    )
    assert PASSWORD not in stored_row(channel)
    plan = plan_for(channel)
    assert plan.spec is not None, plan.problem
    assert plan.spec.options.tls.key_password.get_secret_value() == PASSWORD
    assert PASSWORD not in plan.settings_key

    listener(channel)
    trusting = TLSConfig(ca_file=ca.cert_file).client_context()
    with MLLPClient("127.0.0.1", mllp_port, tls=trusting) as client:
        assert msa(client.send(factories.adt_a01("SEALED-TLS-1"))) == ("AA", "SEALED-TLS-1")
    assert Message.objects.filter(control_id="SEALED-TLS-1").exists()
