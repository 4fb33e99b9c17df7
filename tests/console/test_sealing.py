"""Encryption at rest: with HUB_ENCRYPTION_KEYS set, bodies are sealed in the database, read back
wherever they are shown or sent, and a key is rotated without losing a row."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from channels_app import sealing
from channels_app.models import Delivery, Message
from channels_app.sealing import open_config
from console.roles import Role
from tests import factories
from tests.support import send, wait_for

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
FAMILY = "QUINTAVALLESEALED"


def stored(message_id: int) -> tuple[bytes, object, bytes | None]:
    """The row as PostgreSQL holds it, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT raw, canonical::text, canonical_sealed FROM channels_app_message WHERE id = %s",
            [message_id],
        )
        raw, canonical, sealed = cursor.fetchone()
    return bytes(raw), canonical, bytes(sealed) if sealed is not None else None


# --- the primitives, no database --------------------------------------------------------------


def test_without_a_key_nothing_is_sealed(settings):
    settings.HUB_ENCRYPTION_KEYS = []
    assert sealing.seal(b"MSH|x") == b"MSH|x"
    assert sealing.unseal(b"MSH|x") == b"MSH|x"


def test_sealed_values_are_prefixed_compact_and_plaintext_still_reads(settings):
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    sealed = sealing.seal(f"PID|1||M1||{FAMILY}".encode())
    assert sealed.startswith(sealing.SEALED_PREFIX)
    big = b"OBX|" * 1000
    assert len(sealing.seal(big)) <= len(big) + 64  # binary: no base64, 45 bytes of framing
    assert FAMILY.encode() not in sealed
    assert sealing.unseal(sealed) == f"PID|1||M1||{FAMILY}".encode()
    assert sealing.unseal(b"MSH|written before the key") == b"MSH|written before the key"


def test_a_batch_is_sealed_in_one_call_each_value_with_a_nonce_of_its_own(settings):
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    values = [b"MSH|same", b"MSH|same", b"", f"PID|1||M1||{FAMILY}".encode()]
    sealed = sealing.seal_many(values)
    assert [sealing.unseal(value) for value in sealed] == values
    start = len(sealing.SEALED_PREFIX) + 4  # the key id, then the nonce
    assert len({value[start : start + 12] for value in sealed}) == len(values)
    assert sealed[0] != sealed[1]


def test_an_altered_sealed_value_does_not_open(settings):
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    sealed = bytearray(sealing.seal(b"PID|1||M1||DOE"))
    sealed[-1] ^= 1
    with pytest.raises(sealing.SealError, match="altered"):
        sealing.unseal(bytes(sealed))


def test_a_value_no_key_opens_is_a_clear_error(settings):
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    sealed = sealing.seal(b"secret")
    settings.HUB_ENCRYPTION_KEYS = [NEW_KEY]
    with pytest.raises(sealing.SealError, match="no key"):
        sealing.unseal(sealed)
    settings.HUB_ENCRYPTION_KEYS = []
    with pytest.raises(sealing.SealError, match="not set"):
        sealing.unseal(sealed)


# --- the whole path ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_bodies_are_sealed_in_the_database_and_shown_to_an_operator(
    settings, hub, mllp_port, fhir_sink, client
):
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    raw = factories.adt_a01("SEAL-1", family=FAMILY, mrn="M-SEAL-1")
    send(mllp_port, raw)
    delivery = wait_for(
        lambda: Delivery.objects.filter(
            message__control_id="SEAL-1", status=Delivery.Status.DELIVERED
        ).first(),
        what="sealed message delivered",
    )
    # The FHIR server got the bundle in the clear ...
    [bundle] = fhir_sink.bundles()
    assert bundle["entry"][0]["resource"]["name"][0]["family"] == FAMILY
    # ... while the database holds neither the name nor any plain canonical JSON.
    stored_raw, canonical, sealed = stored(delivery.message_id)
    assert stored_raw.startswith(sealing.SEALED_PREFIX) and FAMILY.encode() not in stored_raw
    assert canonical is None
    assert sealed.startswith(sealing.SEALED_PREFIX) and FAMILY.encode() not in sealed
    message = Message.objects.get(pk=delivery.message_id)
    assert message.size == len(raw)  # the size received, not the size sealed
    assert message.raw_text == raw.decode() and message.canonical_json == bundle

    client.force_login(factories.user("op-seal", Role.OPERATOR))
    masked = client.get(f"/messages/{message.pk}/").content.decode()
    assert FAMILY not in masked and "EVN|A01" in masked
    revealed = client.post(f"/messages/{message.pk}/reveal/").content.decode()
    assert revealed.count(FAMILY) >= 2  # the raw PID segment and the canonical Patient


@pytest.mark.django_db
def test_rows_written_before_the_key_was_set_still_read(settings, client):
    settings.HUB_ENCRYPTION_KEYS = []
    channel = factories.channel(40101)
    message = Message.objects.create(
        channel=channel,
        raw=factories.adt_a01("PLAIN-1", family=FAMILY),
        canonical={"resourceType": "Bundle", "entry": [{"name": FAMILY}]},
    )
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    message = Message.objects.get(pk=message.pk)
    assert FAMILY in message.raw_text and message.canonical_json["entry"][0]["name"] == FAMILY
    client.force_login(factories.user("op-plain", Role.OPERATOR))
    assert FAMILY in client.post(f"/messages/{message.pk}/reveal/").content.decode()


@pytest.mark.django_db
def test_rotation_old_key_to_new_key_then_the_old_key_is_dropped(settings):
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    channel = factories.channel(40102)
    raw = factories.adt_a01("ROT-1", family=FAMILY)
    bundle = {"resourceType": "Bundle", "entry": [{"family": FAMILY}]}
    sealed_message = Message.objects.create(
        channel=channel, raw=sealing.seal(raw), canonical_sealed=sealing.seal_json(bundle)
    )
    settings.HUB_ENCRYPTION_KEYS = []
    plain_message = Message.objects.create(channel=channel, raw=raw, canonical=bundle)
    pruned = Message.objects.create(channel=channel, raw=b"")
    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]
    destination = factories.fhir_destination(
        channel,
        "http://fhir.example/fhir",
        config={"base_url": "http://fhir.example/fhir", "bearer_token": "tok-ROTATE"},
    )

    settings.HUB_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]  # the new key seals, the old one still opens
    out = io.StringIO()
    call_command("rotate_keys", "--batch-size", "2", stdout=out)
    assert "messages: 2/3" in out.getvalue() and "messages: 3/3" in out.getvalue()

    settings.HUB_ENCRYPTION_KEYS = [NEW_KEY]  # the old key is gone
    for message in (sealed_message, plain_message):
        raw_now, canonical_now, sealed_now = stored(message.pk)
        assert FAMILY.encode() not in raw_now and canonical_now is None
        assert FAMILY.encode() not in sealed_now
        fresh = Message.objects.get(pk=message.pk)
        assert fresh.raw_text == raw.decode() and fresh.canonical_json == bundle
    assert stored(pruned.pk)[0] == b""  # an emptied body stays empty
    destination.refresh_from_db()
    opened = open_config("fhir_rest", destination.config)
    assert opened["bearer_token"] == "tok-ROTATE"

    settings.HUB_ENCRYPTION_KEYS = [OLD_KEY]  # and the old key alone opens nothing any more
    with pytest.raises(sealing.SealError):
        _ = Message.objects.get(pk=sealed_message.pk).raw_text
    with pytest.raises(sealing.SealError):
        open_config("fhir_rest", destination.config)


@pytest.mark.django_db
def test_rotate_keys_needs_a_key(settings):
    settings.HUB_ENCRYPTION_KEYS = []
    with pytest.raises(CommandError, match="not set"):
        call_command("rotate_keys")
