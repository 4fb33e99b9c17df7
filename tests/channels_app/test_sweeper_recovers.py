"""Redis is only a signal: flush it after ingest and the sweeper still gets every message out."""

from __future__ import annotations

import base64
import json
import time

import pytest

from adapters.transports.mllp import MLLPClient
from channels_app import tasks
from channels_app.models import Delivery, Message
from tests import factories
from tests.support import threaded_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def signalled(client) -> set[int]:
    """The message ids the queued process tasks carry (kombu keeps JSON envelopes around base64
    bodies of ``[args, kwargs, embed]``)."""
    ids: set[int] = set()
    for envelope in client.lrange("process", 0, -1):
        args, _, _ = json.loads(base64.b64decode(json.loads(envelope)["body"]))
        ids.update(args[0])
    return ids


def test_redis_flushed_after_ack_loses_no_message(
    mllp_port, listener, fhir_sink, redis_client, settings
):
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, fhir_sink.url)
    listener(channel)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        for i in range(5):
            client.send(factories.adt_a01(f"LOST-{i}"))
    ids = list(Message.objects.filter(status=Message.Status.RECEIVED).values_list("id", flat=True))
    assert len(ids) == 5
    # Every message's signal to the workers sent (the listener sends them after the ACKs)...
    wait_for(lambda: signalled(redis_client) == set(ids), what="the signals to the workers")
    redis_client.flushdb()  # ...and gone (this test's database only: Redis is shared)

    with threaded_worker(concurrency=2):
        time.sleep(1)
        assert Message.objects.filter(status=Message.Status.RECEIVED).count() == 5  # nothing to do
        settings.HUB = {**settings.HUB, "SWEEP_AFTER_S": 0}
        tasks.sweep.delay()
        wait_for(
            lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 5,
            what="all delivered",
        )
    assert sorted(b["identifier"]["value"] for b in fhir_sink.bundles()) == [
        f"LOST-{i}" for i in range(5)
    ]
    assert sum(fhir_sink.effects.values()) == 5


def test_sweeper_leaves_fresh_work_alone(mllp_port, listener, redis_client):
    channel = factories.channel(mllp_port)
    listener(channel)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("FRESH-1"))
    redis_client.flushdb()
    assert tasks.sweep() == {"messages": 0, "deliveries": 0}
