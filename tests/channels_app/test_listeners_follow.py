"""`run_listeners` follows the configuration (issue 10): channels created, changed, disabled and
re-enabled have their source started, moved or stopped within 5 s, without touching the other
channels' connections, and every source's true state reaches the console through the heartbeat.

The production serve() runs on a thread (`ListenerThread(follow=True)`) over real sockets,
directories and the real database."""

from __future__ import annotations

import socket

import pytest

from adapters.codecs import hl7v2
from adapters.transports.mllp import MLLPClient
from channels_app.management.commands.run_listeners import database_conninfo
from channels_app.models import Channel, Message
from channels_app.sources.status import source_states
from tests import factories
from tests.support import ListenerThread, free_port, port_open, send, signed_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN_S = 5  # what issue 10 promises


@pytest.fixture
def following():
    """`run_listeners` as it runs in production: every enabled channel, as it changes."""
    thread = ListenerThread([], database_conninfo(), follow=True).start()
    yield thread
    thread.stop()


def msa1(ack: bytes) -> str:
    return hl7v2.parse(ack).get("MSA-1")


def state_of(channel: Channel):
    channel.refresh_from_db()
    return source_states([channel])[channel.pk]


def becomes(channel: Channel, state: str):
    return wait_for(
        lambda: (s := state_of(channel)).state == state and s,
        timeout=WITHIN_S,
        what=f"channel {channel.name!r} {state}",
    )


def set_source(channel: Channel, **changes) -> None:
    channel.source_config = {**channel.source_config, **changes}
    channel.save()


def test_a_port_change_moves_the_listener_and_spares_the_other_channels(following):
    moving_port, other_port, new_port = free_port(), free_port(), free_port()
    moving = factories.channel(moving_port)
    factories.channel(other_port)
    wait_for(lambda: port_open(moving_port) and port_open(other_port), timeout=WITHIN_S)
    with MLLPClient("127.0.0.1", other_port) as kept:
        assert msa1(kept.send(factories.adt_a01("OTHER-1"))) == "AA"

        set_source(moving, port=new_port)

        wait_for(lambda: port_open(new_port), timeout=WITHIN_S, what="the new port")
        assert msa1(send(new_port, factories.adt_a01("MOVED-1"))) == "AA"
        wait_for(lambda: not port_open(moving_port), timeout=WITHIN_S, what="the old port closed")
        assert msa1(kept.send(factories.adt_a01("OTHER-2"))) == "AA"  # same connection
    assert Message.objects.get(control_id="MOVED-1").channel_id == moving.pk
    assert becomes(moving, "listening")


def test_a_created_channel_listens_and_a_disabled_one_stops(following):
    port = free_port()
    channel = factories.channel(port)
    wait_for(lambda: port_open(port), timeout=WITHIN_S, what="the new channel's port")
    assert msa1(send(port, factories.adt_a01("CREATED-1"))) == "AA"
    assert becomes(channel, "listening").processes == 1
    wait_for(lambda: state_of(channel).last_message_at, timeout=WITHIN_S, what="the next beat")

    channel.enabled = False
    channel.save()

    wait_for(lambda: not port_open(port), timeout=WITHIN_S, what="the port closed")
    assert becomes(channel, "stopped")

    channel.enabled = True
    channel.save()
    wait_for(lambda: port_open(port), timeout=WITHIN_S, what="the port open again")
    assert msa1(send(port, factories.adt_a01("AGAIN-1"))) == "AA"


def test_a_port_taken_is_shown_with_the_os_error_until_it_is_free(following, viewer_user):
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        channel = factories.channel(port)
        failed = becomes(channel, "error")
        assert "address already in use" in failed.error
        page = signed_in(viewer_user).get("/channels/").content.decode()
        assert 'data-source-state="error"' in page and "address already in use" in page
        assert "listening</span>" not in page
    finally:
        squatter.close()
    wait_for(lambda: state_of(channel).state == "listening", timeout=15, what="the retry")
    assert msa1(send(port, factories.adt_a01("FREED-1"))) == "AA"


def test_bad_settings_are_an_error_of_that_channel_only(following):
    good_port = free_port()
    good = factories.channel(good_port)
    bad = factories.channel(0, source_config={"host": "127.0.0.1", "port": free_port()})
    Channel.objects.filter(pk=bad.pk).update(
        source_config={"host": "127.0.0.1", "port": bad.port, "max_connections": 0}
    )
    failed = becomes(bad, "error")
    assert "max_connections" in failed.error
    assert becomes(good, "listening")
    assert msa1(send(good_port, factories.adt_a01("GOOD-1"))) == "AA"


def test_a_stopped_process_is_no_longer_claimed(viewer_user):
    port = free_port()
    channel = factories.channel(port)
    thread = ListenerThread([], database_conninfo(), follow=True).start()
    try:
        becomes(channel, "listening")
    finally:
        thread.stop()
    assert not port_open(port)
    assert state_of(channel).state in ("stopped", "not running")
    page = signed_in(viewer_user).get("/channels/").content.decode()
    assert 'data-source-state="listening"' not in page


def test_file_pickup_follows_the_configuration(following, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    config = {"directory": str(first), "interval_s": 0.1, "settle_s": 0}
    channel = factories.channel(0, source_type=Channel.SourceType.FILE, source_config=config)
    (first / "a.hl7").write_bytes(factories.adt_a01("FILE-A"))
    wait_for(lambda: (first / "processed" / "a.hl7").exists(), timeout=WITHIN_S, what="a.hl7")
    wait_for(lambda: state_of(channel).last_message_at, timeout=WITHIN_S, what="the next beat")

    set_source(channel, directory=str(second))
    (second / "b.hl7").write_bytes(factories.adt_a01("FILE-B"))
    wait_for(lambda: (second / "processed" / "b.hl7").exists(), timeout=WITHIN_S, what="b.hl7")

    set_source(channel, directory=str(tmp_path / "missing"))
    failed = becomes(channel, "error")
    assert "is not a directory" in failed.error

    set_source(channel, directory=str(second))
    becomes(channel, "listening")
    channel.enabled = False
    channel.save()
    becomes(channel, "stopped")
    (second / "c.hl7").write_bytes(factories.adt_a01("FILE-C"))
    assert not wait_for_quietly(lambda: (second / "processed" / "c.hl7").exists(), 1.5)
    assert set(Message.objects.values_list("control_id", flat=True)) == {"FILE-A", "FILE-B"}


def wait_for_quietly(predicate, seconds: float) -> bool:
    try:
        return wait_for(predicate, timeout=seconds)
    except AssertionError:
        return False
