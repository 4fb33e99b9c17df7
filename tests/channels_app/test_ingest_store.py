"""Ingest's store, alone (a lone message: `STORE_ONE`) or in company (a batch: `STORE_BATCH`):
the same dedupe within a channel's window, the same rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import ProtectedError

from channels_app.models import ChannelVersion, DedupeEntry, Message
from channels_app.pipeline.ingest import read_inbound, store_now
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["alone", "in a batch"])
def store(request):
    """Store one message, alone or with a message of another sender beside it; its result."""
    fillers = iter(range(1000))

    def store_one(item):
        company = []
        if request.param == "in a batch":
            filler = factories.adt_a01(f"FILLER-{next(fillers)}", sender="OTHER")
            company = [inbound(item.channel_id, filler, item.dedupe_window_s)]
        with connection.cursor() as cursor:
            return store_now(cursor, [item, *company])[0]

    return store_one


def inbound(channel_id: int, raw: bytes, window_s: int = 3600):
    return read_inbound(
        raw, channel_id=channel_id, channel_version_id=None, dedupe_window_s=window_s
    )


def test_a_repeat_within_the_window_is_counted_not_stored(store):
    channel = factories.channel(41501)
    first = store(inbound(channel.pk, factories.adt_a01("KEY-1")))
    again = store(inbound(channel.pk, factories.adt_a01("KEY-1")))
    assert first.message_id and not first.duplicate
    assert again.message_id is None and again.duplicate
    stored = Message.objects.get(pk=first.message_id)
    assert stored.control_id == "KEY-1" and stored.status == "RECEIVED"
    assert stored.raw_text == factories.adt_a01("KEY-1").decode()
    [entry] = DedupeEntry.objects.filter(channel=channel, key__endswith="|KEY-1")
    assert entry.duplicates == 1


def test_a_repeat_after_the_window_is_a_new_message_and_restarts_it(store):
    channel = factories.channel(41502, dedupe_window_s=3600)
    first = store(inbound(channel.pk, factories.adt_a01("KEY-2")))
    entry = DedupeEntry.objects.get(channel=channel, key__endswith="|KEY-2")
    DedupeEntry.objects.filter(pk=entry.pk).update(seen_at=entry.seen_at - timedelta(hours=2))
    again = store(inbound(channel.pk, factories.adt_a01("KEY-2")))
    assert again.message_id and again.message_id != first.message_id
    entry.refresh_from_db()
    assert entry.duplicates == 0
    assert entry.seen_at == Message.objects.get(pk=again.message_id).received_at


def test_without_a_window_every_copy_is_stored(store):
    channel = factories.channel(41503, dedupe_window_s=0)
    ids = {store(inbound(channel.pk, factories.adt_a01("KEY-3"), 0)).message_id for _ in range(2)}
    assert None not in ids and len(ids) == 2
    assert not DedupeEntry.objects.filter(channel=channel).exists()


def test_a_channel_with_messages_cannot_be_deleted_and_one_without_takes_its_versions():
    """A message's version has neither constraint nor index: what keeps it from pointing at a
    deleted version is that versions go only with their channel, which its messages protect."""
    used, unused = factories.channel(0, name="used"), factories.channel(0, name="unused")
    for channel in (used, unused):
        channel.publish(note="first")
    version = used.current_version()
    with connection.cursor() as cursor:
        item = inbound(used.pk, factories.adt_a01("KEEP-1"))
        item.channel_version_id = version.pk
        store_now(cursor, [item])
    with pytest.raises(ProtectedError):
        used.delete()
    assert Message.objects.get(channel=used).channel_version == version
    unused.delete()
    assert not ChannelVersion.objects.filter(channel_id=unused.pk).exists()
