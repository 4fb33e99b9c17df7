"""Ingest over a real MLLP socket: the ACK is truthful and nothing the sender gave is lost."""

from __future__ import annotations

import pytest

from adapters.codecs import hl7v2
from adapters.transports.mllp import MLLPClient
from channels_app.models import DedupeEntry, Message
from channels_app.sealing import unseal
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def ack_of(raw: bytes) -> hl7v2.Message:
    return hl7v2.parse(raw)


@pytest.fixture
def channel(mllp_port):
    return factories.channel(mllp_port, max_message_bytes=20_000)


@pytest.fixture
def client(channel, listener, mllp_port):
    listener(channel)
    with MLLPClient("127.0.0.1", mllp_port) as c:
        yield c


def test_aa_after_commit_with_msh_swapped_and_control_id_echoed(client, channel):
    ack = ack_of(client.send(factories.adt_a01("C-1")))
    assert ack.message_type == "ACK^A01"
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "C-1"
    assert (ack.get("MSH-3"), ack.get("MSH-4"), ack.get("MSH-5"), ack.get("MSH-6")) == (
        "HUB",
        "HUB",
        "EPIC",
        "HOSP",
    )
    assert ack.version == "2.5.1"
    stored = Message.objects.get(control_id="C-1")  # committed before the ACK was written
    assert stored.status == Message.Status.RECEIVED
    assert (stored.channel_id, stored.message_type, stored.sending_application) == (
        channel.id,
        "ADT^A01",
        "EPIC",
    )
    assert unseal(stored.raw) == factories.adt_a01("C-1")
    assert stored.channel_version is None or stored.channel_version.channel_id == channel.id


def test_ack_uses_the_senders_version_and_encoding_characters(client):
    raw = b"MSH$*@!%$EHR$FAC$HUB$HUB$20240101$$ADT*A04$X-7$P$2.3\rPID$1$$42\r"
    ack = client.send(raw)
    assert ack.startswith(b"MSH$*@!%$HUB$HUB$EHR$FAC$")
    parsed = ack_of(ack)
    assert parsed.get("MSA-1") == "AA" and parsed.get("MSA-2") == "X-7" and parsed.version == "2.3"


def test_unreadable_message_is_rejected_with_its_reason_and_stored(client):
    raw = b"PID|1||123\rPV1|1|I\r"
    ack = ack_of(client.send(raw))
    assert ack.get("MSA-1") == "AR"
    assert "must start with an MSH segment" in ack.get("MSA-3")
    assert "must start with an MSH segment" in ack.get("ERR-8")
    stored = Message.objects.get()
    assert stored.status == Message.Status.ERROR and stored.error_stage == "parse"
    assert unseal(stored.raw) == raw and "MSH" in stored.error_detail


def test_bad_segment_gets_ae_naming_the_segment(client):
    raw = b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|BAD-1|P|2.5.1\rPID|1\r1X|oops\r"
    ack = ack_of(client.send(raw))
    assert ack.get("MSA-1") == "AE" and ack.get("MSA-2") == "BAD-1"
    assert "segment" in ack.get("MSA-3")
    stored = Message.objects.get(control_id="BAD-1")
    assert stored.status == Message.Status.ERROR and "segment #3" in stored.error_detail


def test_bytes_outside_a_frame_are_refused_and_kept(client):
    client.send_raw(b"hello, not MLLP\r")
    ack = ack_of(client.receive())
    assert ack.get("MSA-1") == "AR" and "outside an MLLP frame" in ack.get("MSA-3")
    stored = Message.objects.get()
    assert stored.error_stage == "framing" and unseal(stored.raw) == b"hello, not MLLP\r"
    # The connection still works for the next, well-framed message.
    assert ack_of(client.send(factories.adt_a01("AFTER"))).get("MSA-1") == "AA"


def test_oversize_message_is_refused_with_the_limit_and_the_connection_survives(client):
    big = factories.adt_a01("BIG") + b"NTE|1||" + b"x" * 30_000 + b"\r"
    ack = ack_of(client.send(big))
    assert ack.get("MSA-1") == "AR" and "20000-byte limit" in ack.get("MSA-3")
    stored = Message.objects.get()
    assert stored.status == Message.Status.ERROR and unseal(stored.raw).startswith(b"MSH|")
    assert ack_of(client.send(factories.adt_a01("SMALL"))).get("MSA-1") == "AA"


def test_duplicate_control_id_from_same_sender_is_acked_stored_once_and_counted(client, channel):
    first = ack_of(client.send(factories.adt_a01("DUP-1")))
    again = ack_of(client.send(factories.adt_a01("DUP-1")))
    assert first.get("MSA-1") == again.get("MSA-1") == "AA"
    assert Message.objects.filter(control_id="DUP-1").count() == 1
    assert DedupeEntry.objects.get(channel=channel).duplicates == 1
    # Same control id from another sender is a different message.
    ack_of(client.send(factories.adt_a01("DUP-1", sender="CERNER")))
    assert Message.objects.filter(control_id="DUP-1").count() == 2


def test_duplicate_after_the_window_is_a_new_message(mllp_port, listener):
    channel = factories.channel(mllp_port, dedupe_window_s=0)
    listener(channel)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("SAME"))
        client.send(factories.adt_a01("SAME"))
    assert Message.objects.filter(control_id="SAME").count() == 2


def test_many_concurrent_connections_each_get_their_own_ack(channel, listener, mllp_port):
    from concurrent.futures import ThreadPoolExecutor

    listener(channel)

    def send_many(conn: int) -> list[str]:
        with MLLPClient("127.0.0.1", mllp_port) as c:
            return [
                ack_of(c.send(factories.adt_a01(f"C{conn}-{i}"))).get("MSA-2") for i in range(25)
            ]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send_many, range(8)))
    for conn, acks in enumerate(results):
        assert acks == [f"C{conn}-{i}" for i in range(25)]
    assert Message.objects.count() == 200
