"""The MLLP listener's limits, over real sockets: what a hostile or broken sender can hold is
bounded, and while one does its worst, a well-behaved sender keeps getting its ACKs (how fast is
measured by `make bench`, bench/bench_listener_flood.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.codecs import hl7v2
from adapters.transports.mllp import START, FrameReader, ListenerLimits, MLLPClient, frame
from channels_app.management.commands.run_listeners import database_conninfo
from channels_app.models import Message
from channels_app.sealing import unseal
from channels_app.sources.mllp import ListenerSpec, channel_limits
from tests import factories
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def mllp_channel(port: int, max_message_bytes: int = 1024 * 1024, **limits):
    config = {"host": "127.0.0.1", "port": port, **limits}
    return factories.channel(port, source_config=config, max_message_bytes=max_message_bytes)


def msa1(ack: bytes) -> str:
    return hl7v2.parse(ack).get("MSA-1")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def having(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


@pytest.fixture
def listener_log():
    logger = logging.getLogger("channels_app.sources.mllp")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True if the listener closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def was_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_limits_default_and_come_from_the_channel(mllp_port):
    assert ListenerLimits() == ListenerLimits(
        max_connections=100,
        max_connections_per_ip=20,
        preframe_timeout_s=5,
        idle_timeout_s=600,
        frame_timeout_s=60,
        allowed_ips=(),
    )
    channel = mllp_channel(mllp_port, idle_timeout_s=2.5, max_connections=7)
    spec = ListenerSpec(channel.id, channel.name, None, "127.0.0.1", mllp_port, 0, 1000)
    limits = asyncio.run(channel_limits(database_conninfo(), spec))
    assert (limits.idle_timeout_s, limits.max_connections, limits.frame_timeout_s) == (2.5, 7, 60)
    channel.source_config["max_connections"] = 0
    channel.save()
    with pytest.raises(ValueError, match="max_connections"):
        asyncio.run(channel_limits(database_conninfo(), spec))


def test_an_idle_connection_is_closed_and_logged(mllp_port, listener, listener_log):
    listener(mllp_channel(mllp_port, idle_timeout_s=0.5))
    with MLLPClient("127.0.0.1", mllp_port) as client:
        assert msa1(client.send(factories.adt_a01("BEFORE-IDLE"))) == "AA"
        began = time.monotonic()
        assert closed_by_peer(client.sock, within=5)
        assert 0.4 < time.monotonic() - began < 3
    assert listener_log.having("no complete frame for 0.5 s")


def test_a_connection_that_starts_no_frame_is_closed_within_seconds(
    mllp_port, listener, listener_log
):
    listener(mllp_channel(mllp_port, preframe_timeout_s=0.5))
    with socket.create_connection(("127.0.0.1", mllp_port)) as silent:
        assert closed_by_peer(silent, within=5)
    assert listener_log.having("no frame started within 0.5 s")


def test_a_sender_between_frames_is_not_held_to_the_preframe_timeout(mllp_port, listener):
    listener(mllp_channel(mllp_port, preframe_timeout_s=0.3, idle_timeout_s=60))
    with MLLPClient("127.0.0.1", mllp_port) as client:
        assert msa1(client.send(factories.adt_a01("FIRST"))) == "AA"
        assert not closed_by_peer(client.sock, within=1.0)
        client.sock.settimeout(10)
        assert msa1(client.send(factories.adt_a01("SECOND"))) == "AA"


@pytest.mark.parametrize("trickle", [b"\r", b"x"], ids=["whitespace", "junk"])
def test_bytes_outside_frames_do_not_keep_a_connection_open(mllp_port, listener, trickle):
    listener(mllp_channel(mllp_port, idle_timeout_s=1))
    with socket.create_connection(("127.0.0.1", mllp_port)) as sock:
        began = time.monotonic()
        sock.settimeout(0.2)
        closed = False
        while not closed and time.monotonic() - began < 5:
            try:
                sock.sendall(trickle)
                while sock.recv(65536):  # junk is answered (AR) until the listener closes
                    pass
                closed = True
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed and time.monotonic() - began < 3
    if trickle.strip():
        assert Message.objects.filter(error_stage="framing").count() >= 1
    else:
        assert Message.objects.count() == 0  # whitespace is not a message


def test_slow_loris_frame_is_cut_off_stored_and_refused(mllp_port, listener, listener_log):
    listener(mllp_channel(mllp_port, frame_timeout_s=1, idle_timeout_s=30))
    message = factories.adt_a01("SLOW-1")
    sent = bytearray()
    with socket.create_connection(("127.0.0.1", mllp_port)) as loris:
        loris.sendall(START)
        began = time.monotonic()
        try:
            for byte in message:  # a byte each 0.1 s: 40 s for the whole message
                loris.sendall(bytes([byte]))
                sent.append(byte)
                time.sleep(0.1)
                if time.monotonic() - began > 5:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(loris, timeout=5)
        assert time.monotonic() - began < 3
    ack = hl7v2.parse(answer.strip(b"\x0b\x1c\r"))
    assert ack.get("MSA-1") == "AR" and "frame not completed within 1 s" in ack.get("MSA-3")
    stored = Message.objects.get()
    assert stored.status == Message.Status.ERROR and stored.error_stage == "framing"
    assert (
        unseal(stored.raw) == bytes(sent)[: len(unseal(stored.raw))] and len(unseal(stored.raw)) > 0
    )
    assert listener_log.having("frame not completed within 1 s")


def test_a_frame_streamed_past_the_size_limit_costs_no_more_than_the_limit(mllp_port, listener):
    listener(mllp_channel(mllp_port, max_message_bytes=50_000))
    with MLLPClient("127.0.0.1", mllp_port) as client:
        body = factories.adt_a01("HUGE") + b"NTE|1||" + b"x" * 3_000_000 + b"\r"
        data = frame(body)
        for at in range(0, len(data), 8192):
            client.send_raw(data[at : at + 8192])
        ack = hl7v2.parse(client.receive())
        assert ack.get("MSA-1") == "AR" and "50000-byte limit" in ack.get("MSA-3")
        assert msa1(client.send(factories.adt_a01("AFTER-HUGE"))) == "AA"
    huge = Message.objects.get(status=Message.Status.ERROR)
    assert huge.error_stage == "framing" and len(unseal(huge.raw)) <= 64 * 1024
    assert unseal(huge.raw).startswith(b"MSH|")


def test_the_frame_reader_never_buffers_more_than_the_limit_and_a_chunk():
    reader = FrameReader(50_000)
    data = frame(b"MSH|" + b"x" * 10_000_000)
    largest, out = 0, []
    for at in range(0, len(data), 4096):
        out += reader.feed(data[at : at + 4096])
        largest = max(largest, len(reader.buffer))
    assert largest <= 50_000 + 4096 + 1
    assert len(out) == 1 and "50000-byte limit" in str(out[0]) and not reader.holding


def frame_begun(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection inside a frame that never ends: not idle, so never closed to make room."""
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    sock.sendall(START + b"MSH|")
    return sock


def test_connections_beyond_the_maximum_are_refused_when_none_is_idle(
    mllp_port, listener, listener_log
):
    listener(mllp_channel(mllp_port, max_connections=3))
    time.sleep(0.2)  # the start-up probe's connection is let go
    busy = [frame_begun(mllp_port) for _ in range(3)]
    try:
        time.sleep(0.2)  # the listener has read their first bytes
        with socket.create_connection(("127.0.0.1", mllp_port)) as excess:
            assert closed_by_peer(excess, within=2)
        assert listener_log.having("max_connections 3")
        busy.pop().close()
        time.sleep(0.2)  # the listener sees the close
        with MLLPClient("127.0.0.1", mllp_port) as again:
            assert msa1(again.send(factories.adt_a01("SLOT-AGAIN"))) == "AA"
    finally:
        for sock in busy:
            sock.close()


def test_a_full_listener_closes_an_idle_connection_for_a_newcomer(
    mllp_port, listener, listener_log
):
    """A stray connection that never started a frame goes first; then the sender idle longest,
    once it has waited longer than the preframe timeout (a sender that is sending stays)."""
    listener(mllp_channel(mllp_port, max_connections=3, preframe_timeout_s=1))
    time.sleep(0.2)
    senders = [MLLPClient("127.0.0.1", mllp_port) for _ in range(2)]
    stray = socket.create_connection(("127.0.0.1", mllp_port))
    try:
        for n, sender in enumerate(senders):
            assert msa1(sender.send(factories.adt_a01(f"SENDER-{n}"))) == "AA"
        with MLLPClient("127.0.0.1", mllp_port) as newcomer:
            assert msa1(newcomer.send(factories.adt_a01("NEWCOMER-1"))) == "AA"
            assert closed_by_peer(stray, within=2)
            assert not was_closed(senders[0].sock) and not was_closed(senders[1].sock)
            with socket.create_connection(("127.0.0.1", mllp_port)) as excess:
                assert closed_by_peer(excess, within=0.5)  # the senders sent just now
            assert not was_closed(senders[0].sock) and not was_closed(senders[1].sock)
            time.sleep(1.2)
            with MLLPClient("127.0.0.1", mllp_port) as second:
                assert msa1(second.send(factories.adt_a01("NEWCOMER-2"))) == "AA"
                assert closed_by_peer(senders[0].sock, within=2)
                senders[1].sock.setblocking(True)
                assert msa1(senders[1].send(factories.adt_a01("SENDER-1-AGAIN"))) == "AA"
        assert listener_log.having("closed an idle MLLP connection")
    finally:
        stray.close()
        for sender in senders:
            sender.close()


def test_a_connection_flood_does_not_lock_out_a_well_behaved_sender(mllp_port, listener):
    """300 connections at once, each inside a frame it never ends, then new ones as fast as they
    are refused, for as long as a steady sender sends 50 messages: it gets every ACK, and every
    excess connection is refused."""
    listener(mllp_channel(mllp_port, max_connections=50, idle_timeout_s=30))
    flood: list[socket.socket] = []
    steady_done = threading.Event()

    def open_one(_=None):
        try:
            return frame_begun(mllp_port)
        except OSError:
            return None

    def keep_flooding():
        while not steady_done.is_set() and len(flood) < 1500:
            sock = open_one()
            if sock is not None:
                flood.append(sock)

    with MLLPClient("127.0.0.1", mllp_port) as sender:
        assert msa1(sender.send(factories.adt_a01("WARM"))) == "AA"
        with ThreadPoolExecutor(16) as pool:
            flood += [s for s in pool.map(open_one, range(300)) if s is not None]
        floods = [threading.Thread(target=keep_flooding) for _ in range(2)]
        for thread in floods:
            thread.start()
        try:
            sender.sock.settimeout(30)
            acks = [msa1(sender.send(factories.adt_a01(f"STEADY-{n}"))) for n in range(50)]
        finally:
            steady_done.set()
            for thread in floods:
                thread.join(30)
        time.sleep(0.3)
        refused = sum(was_closed(s) for s in flood)
        for s in flood:
            s.close()
    assert acks == ["AA"] * 50
    assert len(flood) >= 300
    assert refused >= len(flood) - 49  # the sender holds one of the 50 slots
    assert Message.objects.filter(control_id__startswith="STEADY-").count() == 50


def test_300_idle_connections_lock_no_sender_out(mllp_port, listener):
    """Issue 15: connections that send nothing, from six addresses (50 each, reopened as the
    listener closes them), keep a default listener full; a sender that opens a fresh connection
    for each message, and another on one kept-open connection, still get every ACK."""
    listener(mllp_channel(mllp_port, preframe_timeout_s=2))
    sources = [f"127.0.0.{n}" for n in range(2, 8)]
    open_now: dict[str, int] = {}
    done = threading.Event()

    def hold(source: str) -> None:
        mine: list[socket.socket] = []
        while not done.is_set():
            mine = [s for s in mine if not was_closed(s)]
            while len(mine) < 50 and not done.is_set():
                try:
                    mine.append(socket.create_connection(("127.0.0.1", mllp_port), 5, (source, 0)))
                except OSError:
                    break
            open_now[source] = len(mine)
            time.sleep(0.1)
        for s in mine:
            s.close()

    holders = [threading.Thread(target=hold, args=(source,)) for source in sources]
    for thread in holders:
        thread.start()
    locked_out = []
    try:
        wait_for(lambda: sum(open_now.values()) >= 300, timeout=30, what="300 idle connections")
        with MLLPClient("127.0.0.1", mllp_port) as kept:
            kept.sock.settimeout(30)
            for n in range(30):
                try:
                    with MLLPClient("127.0.0.1", mllp_port) as fresh:
                        fresh.sock.settimeout(30)
                        if msa1(fresh.send(factories.adt_a01(f"FRESH-{n}"))) != "AA":
                            locked_out.append(n)
                except OSError:
                    locked_out.append(n)
                assert msa1(kept.send(factories.adt_a01(f"KEPT-{n}"))) == "AA"
    finally:
        done.set()
        for thread in holders:
            thread.join(30)
    print(f"\n300 idle connections: {len(locked_out)} of 30 fresh connections locked out")
    assert locked_out == []
    assert Message.objects.filter(control_id__startswith="FRESH-").count() == 30
    assert Message.objects.filter(control_id__startswith="KEPT-").count() == 30


def test_only_allowed_addresses_may_connect(mllp_port, listener, listener_log):
    listener(mllp_channel(mllp_port, allowed_ips=["10.0.0.0/8", "192.168.1.7"]))
    with socket.create_connection(("127.0.0.1", mllp_port)) as stranger:
        assert closed_by_peer(stranger, within=2)
    assert listener_log.having("not in the channel's allowed_ips")
    assert Message.objects.count() == 0


def test_an_allowed_address_is_served(mllp_port, listener):
    listener(mllp_channel(mllp_port, allowed_ips=["127.0.0.0/8"]))
    with MLLPClient("127.0.0.1", mllp_port) as client:
        assert msa1(client.send(factories.adt_a01("ALLOWED"))) == "AA"


def test_a_flooding_host_cannot_take_the_slots_of_the_others(mllp_port, listener, listener_log):
    """With max_connections_per_ip, a flood from one address (127.0.0.2: Linux routes all of
    127/8 to lo) leaves room for a sender that connects from another one mid-flood."""
    listener(mllp_channel(mllp_port, max_connections=50, max_connections_per_ip=10))
    flood = [frame_begun(mllp_port, source="127.0.0.2") for _ in range(200)]
    try:
        # However busy the machine, the listener refuses the flood beyond its 10 slots...
        wait_for(
            lambda: sum(was_closed(s) for s in flood) >= 190,
            timeout=15,
            what="the connections beyond the 10 allowed refused",
        )
        assert sum(was_closed(s) for s in flood) == 190  # ...and keeps exactly 10
        assert listener_log.having("max_connections_per_ip 10")
        with MLLPClient("127.0.0.1", mllp_port) as newcomer:
            assert msa1(newcomer.send(factories.adt_a01("NEWCOMER"))) == "AA"
    finally:
        for sock in flood:
            sock.close()
