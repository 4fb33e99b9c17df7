"""The MLLP listener's limits, over real sockets: what a hostile or broken sender can hold is
bounded, and while one does its worst, a well-behaved sender keeps getting prompt ACKs."""

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
from channels_app.listeners import ListenerSpec, channel_limits
from channels_app.management.commands.run_listeners import database_conninfo
from channels_app.models import Message
from channels_app.sealing import unseal
from tests import factories

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
    logger = logging.getLogger("channels_app.listeners")
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
        max_connections=100, idle_timeout_s=600, frame_timeout_s=60, allowed_ips=()
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


def test_connections_beyond_the_maximum_are_refused_and_logged(mllp_port, listener, listener_log):
    listener(mllp_channel(mllp_port, max_connections=3))
    time.sleep(0.2)  # the start-up probe's connection is let go
    clients = [MLLPClient("127.0.0.1", mllp_port) for _ in range(3)]
    try:
        for n, client in enumerate(clients):
            assert msa1(client.send(factories.adt_a01(f"SLOT-{n}"))) == "AA"
        with socket.create_connection(("127.0.0.1", mllp_port)) as excess:
            assert closed_by_peer(excess, within=2)
        assert listener_log.having("max_connections 3")
        clients.pop().close()
        time.sleep(0.2)  # the listener sees the close
        with MLLPClient("127.0.0.1", mllp_port) as again:
            assert msa1(again.send(factories.adt_a01("SLOT-AGAIN"))) == "AA"
    finally:
        for client in clients:
            client.close()


def test_a_connection_flood_does_not_starve_a_well_behaved_sender(mllp_port, listener):
    """500 connections at once, then new ones as fast as they are refused, for as long as a
    steady sender sends 100 messages: its ACKs stay prompt and every excess one is refused."""
    listener(mllp_channel(mllp_port, max_connections=50, idle_timeout_s=30))
    flood: list[socket.socket] = []
    steady_done = threading.Event()

    def open_one(_=None):
        try:
            sock = socket.create_connection(("127.0.0.1", mllp_port), timeout=10)
            sock.sendall(START + b"MSH|")  # a frame begun and never ended
        except OSError:
            return None
        return sock

    def keep_flooding():
        while not steady_done.is_set() and len(flood) < 3000:
            sock = open_one()
            if sock is not None:
                flood.append(sock)

    latencies: list[float] = []
    with MLLPClient("127.0.0.1", mllp_port) as sender:
        assert msa1(sender.send(factories.adt_a01("WARM"))) == "AA"
        began = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            flood += [s for s in pool.map(open_one, range(500)) if s is not None]
        burst_s = time.monotonic() - began
        floods = [threading.Thread(target=keep_flooding) for _ in range(4)]
        for thread in floods:
            thread.start()
        for n in range(100):
            sent = time.monotonic()
            assert msa1(sender.send(factories.adt_a01(f"STEADY-{n}"))) == "AA"
            latencies.append(time.monotonic() - sent)
            time.sleep(0.01)
        steady_done.set()
        for thread in floods:
            thread.join(10)
        time.sleep(0.3)
        refused = sum(was_closed(s) for s in flood)
        for s in flood:
            s.close()
    latencies.sort()
    print(
        f"\nflood: {len(flood)} connections ({burst_s:.2f} s for the first 500), {refused} "
        f"refused; steady sender: {len(latencies)} ACKs, p50 "
        f"{latencies[len(latencies) // 2] * 1000:.1f} ms, p95 {latencies[94] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    assert len(flood) >= 500 and latencies[-1] < 1.0
    assert refused >= len(flood) - 49  # the sender holds one of the 50 slots
    assert Message.objects.filter(control_id__startswith="STEADY-").count() == 100


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
    flood = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", mllp_port), source_address=("127.0.0.2", 0))
        sock.sendall(START + b"MSH|")
        flood.append(sock)
    try:
        time.sleep(0.3)
        refused = sum(was_closed(s) for s in flood)
        assert refused == 190
        assert listener_log.having("max_connections_per_ip 10")
        with MLLPClient("127.0.0.1", mllp_port) as newcomer:
            assert msa1(newcomer.send(factories.adt_a01("NEWCOMER"))) == "AA"
    finally:
        for sock in flood:
            sock.close()
