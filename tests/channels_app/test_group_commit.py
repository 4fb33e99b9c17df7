"""Group commit: one transaction for many senders, and one bad row does not fail the others."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from channels_app.management.commands.run_listeners import database_conninfo
from channels_app.models import Message
from channels_app.pipeline.ingest import GroupCommitter, Stored, StoreFailed, read_inbound
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


# Either stands for any row that cannot be stored; ingest cleans a sender's header text of both,
# the peer address is the hub's own.
UNSTORABLE_ADDRESSES = {
    "a NUL, which PostgreSQL refuses": "127.0.0.1\x00",
    "a lone surrogate, which no JSON batch can carry": "127.0.0.1\ud800",
}


@pytest.mark.parametrize("address", UNSTORABLE_ADDRESSES.values(), ids=UNSTORABLE_ADDRESSES)
def test_an_unstorable_message_is_refused_alone(mllp_port, address):
    channel = factories.channel(mllp_port)
    common = {"channel_id": channel.id, "channel_version_id": None, "dedupe_window_s": 0}
    good = [read_inbound(factories.adt_a01(f"OK-{i}"), **common) for i in range(5)]
    bad = read_inbound(factories.adt_a01("BAD"), **common)
    bad.remote_addr = address
    stored_ids: list[int] = []

    async def run():
        committer = GroupCommitter(database_conninfo(), on_stored=stored_ids.extend)
        # Queue everything before the committer starts, so all six share one batch.
        submissions = [
            asyncio.ensure_future(committer.submit(item)) for item in [*good[:3], bad, *good[3:]]
        ]
        await asyncio.sleep(0)
        await committer.start()
        results = await asyncio.gather(*submissions, return_exceptions=True)
        await committer.stop()
        return results

    results = asyncio.run(run())
    assert isinstance(results[3], StoreFailed) and "could not be stored" in str(results[3])
    assert all(isinstance(r, Stored) and r.message_id for i, r in enumerate(results) if i != 3)
    assert sorted(Message.objects.values_list("control_id", flat=True)) == [
        f"OK-{i}" for i in range(5)
    ]
    assert sorted(stored_ids) == sorted(Message.objects.values_list("id", flat=True))


def test_a_nul_in_a_senders_header_is_stored_written_out(mllp_port):
    channel = factories.channel(mllp_port)
    common = {"channel_id": channel.id, "channel_version_id": None, "dedupe_window_s": 0}
    item = read_inbound(factories.adt_a01("NUL"), **common)
    item.header = dataclasses.replace(item.header, control_id="NUL\x00ID")

    async def run():
        committer = GroupCommitter(database_conninfo(), on_stored=lambda ids: None)
        await committer.start()
        stored = await committer.submit(item)
        await committer.stop()
        return stored

    stored = asyncio.run(run())
    assert isinstance(stored, Stored)
    assert Message.objects.get(pk=stored.message_id).control_id == "NUL\\x00ID"
