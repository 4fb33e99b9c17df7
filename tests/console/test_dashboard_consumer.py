"""/ws/dashboard/ on the real channel layer (channels-redis): anonymous sockets are refused, the
pipeline's events arrive, errors arrive masked for every role, and a role taken away ends it."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from channels_app import events
from channels_app.models import Message
from console.asgi import application
from console.consumers import REFUSED, ROLE_LOST
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def end_consumer_connections():
    """The consumer's database calls run in asgiref's thread, whose connection outlives the
    test: close it there so the test database can be flushed."""
    yield
    from django.db import connections

    run(sync_to_async(connections.close_all)())


# The patient's name unquoted: masked by the message's own PHI values, not by quoting.
PHI_REASON = "PID-7 date '19620315' of John Smith is not a date"
PHI_RAW = b"MSH|^~\\&|LAB|H|HUB|H|20261207||ADT^A01|41|P|2.5\rPID|1||MRN41||SMITH^JOHN||19620315"


def run(coroutine):
    """In a thread of its own: a browser test's Playwright keeps an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coroutine, 30)).result()


async def connected(user, path="/ws/dashboard/"):
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")]
    )
    communicator.scope["user"] = user
    ok, code = await communicator.connect(timeout=10)
    return communicator, ok, code


async def next_of_type(communicator, kind: str, timeout: float = 10):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        message = await communicator.receive_json_from(timeout=max(0.1, left))
        if message["type"] == kind:
            return message


def error_event(channel_id: int, message_id: int = 41) -> events.ErrorsOccurred:
    return {
        "type": "errors",
        "errors": [
            {
                "at": "2026-12-07T03:00:00+00:00",
                "message_id": message_id,
                "channel_id": channel_id,
                "destination_id": 0,
                "message_type": "ADT^A01",
                "stage": "map",
                "path": "PID-7",
                "reason": PHI_REASON,
            }
        ],
    }


async def publish(event):
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(events.GROUP, {"type": events.HANDLER, "event": event})


def test_anonymous_sockets_are_refused(redis_client):
    from django.contrib.auth.models import AnonymousUser

    async def scenario():
        communicator, ok, code = await connected(AnonymousUser())
        assert not ok and code == REFUSED

    run(scenario())


def test_a_user_without_a_role_is_refused(no_role_user, redis_client):
    async def scenario():
        communicator, ok, code = await connected(no_role_user)
        assert not ok and code == REFUSED

    run(scenario())


@pytest.mark.parametrize("who", ["viewer_user", "hub_admin_user"])
def test_errors_arrive_masked_for_every_role(who, request, redis_client):
    user = request.getfixturevalue(who)
    channel = factories.channel(2575, name="Lab feed")
    stored = Message.objects.create(channel=channel, raw=PHI_RAW, message_type="ADT^A01")

    async def scenario():
        communicator, ok, _ = await connected(user)
        assert ok
        first = await next_of_type(communicator, "snapshot")
        assert "windows" in first["data"] and "hour" in first["data"]
        await publish(error_event(channel.pk, stored.pk))
        message = await next_of_type(communicator, "errors")
        [row] = message["errors"]
        assert row["channel"] == "Lab feed" and row["stage"] == "map" and row["path"] == "PID-7"
        assert row["url"] == f"/messages/{stored.pk}/"
        assert "19620315" not in row["reason"] and "not a date" in row["reason"]
        assert "Smith" not in row["reason"] and "John" not in row["reason"]
        await communicator.disconnect()

    run(scenario())


def test_statistics_events_bring_a_fresh_snapshot(viewer_user, redis_client):
    from channels_app import stats

    channel = factories.channel(2576)

    async def scenario():
        communicator, ok, _ = await connected(viewer_user)
        assert ok
        await next_of_type(communicator, "snapshot")
        tally = stats.Tally()
        from datetime import UTC, datetime

        tally.count(datetime.now(UTC), (channel.pk, 0), stats.RECEIVED, 7)
        await sync_to_async(stats.write)(tally)
        await publish({"type": "stats", "stages": ["ingest"], "channels": [channel.pk]})
        snapshot = await next_of_type(communicator, "snapshot")
        [minute] = [w for w in snapshot["data"]["windows"] if w["key"] == "15m"]
        assert minute["received"] == 7
        await communicator.disconnect()

    run(scenario())


def test_a_role_taken_away_ends_the_stream_at_the_next_event(viewer_user, redis_client):
    async def scenario():
        communicator, ok, _ = await connected(viewer_user)
        assert ok
        await next_of_type(communicator, "snapshot")
        await sync_to_async(viewer_user.groups.clear)()
        await publish(error_event(1))
        closed = await communicator.receive_output(timeout=10)
        while closed["type"] != "websocket.close":
            closed = await communicator.receive_output(timeout=10)
        assert closed["code"] == ROLE_LOST

    run(scenario())


def test_the_socket_snapshot_carries_each_listener_state(viewer_user, redis_client):
    from django.utils import timezone

    from channels_app.models import SourceHeartbeat

    channel = factories.channel(2577, name="Lab feed")
    SourceHeartbeat.objects.create(
        process="host:1:socket",
        channel=channel,
        state="listening",
        connections=2,
        heartbeat_at=timezone.now(),
    )

    async def scenario():
        communicator, ok, _ = await connected(viewer_user)
        assert ok
        snapshot = await next_of_type(communicator, "snapshot")
        [row] = snapshot["data"]["channels"]
        assert row["listener"] == {"state": "listening", "error": "", "connections": 2}
        await communicator.disconnect()

    run(scenario())
