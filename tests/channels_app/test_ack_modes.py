"""ACK modes over a real MLLP socket: enhanced mode answers as MSH-15 asks, MLLP release 2 adds
its commit block, and every answer follows the commit."""

from __future__ import annotations

import pytest
from django.db import connection

from adapters.codecs import hl7v2
from adapters.transports.mllp import COMMIT_ACK, COMMIT_NAK, MLLPClient, frame
from channels_app.models import Message
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def msg(control_id: str, msh15: str = "", msh16: str = "", body: str = "PID|1||42\r") -> bytes:
    return (
        f"MSH|^~\\&|EHR|FAC|HUB|HUB|20240101||ADT^A01|{control_id}|P|2.5.1|||{msh15}|{msh16}\r"
        + body
    ).encode()


BAD_CONTENT = "PID|1\r1X|oops\r"  # readable MSH, a bad segment: an error, not a reject


def answer(raw: bytes) -> tuple[str, str]:
    ack = hl7v2.parse(raw)
    return ack.get("MSA-1"), ack.get("MSA-2")


@pytest.fixture
def connect(listener, mllp_port):
    def start(max_message_bytes: int = 20_000, **source_config) -> MLLPClient:
        config = {"host": "127.0.0.1", "port": mllp_port, **source_config}
        channel = factories.channel(
            mllp_port, source_config=config, max_message_bytes=max_message_bytes
        )
        listener(channel)
        return MLLPClient("127.0.0.1", mllp_port, timeout=5)

    return start


def test_enhanced_mode_answers_commit_codes_after_the_commit(connect):
    with connect(ack_mode="enhanced") as client:
        assert answer(client.send(msg("E-1", "AL", "NE"))) == ("CA", "E-1")
        assert Message.objects.filter(control_id="E-1").exists()  # stored before the answer
        assert answer(client.send(msg("E-2", "AL", "NE", BAD_CONTENT))) == ("CE", "E-2")
        # Unreadable as sent (oversize): a reject, its MSH-15 salvaged from the kept bytes.
        big = msg("E-3", "AL", "NE", "NTE|1||" + "x" * 30_000 + "\r")
        assert answer(client.send(big)) == ("CR", "E-3")


def test_ne_gets_no_ack_and_the_next_message_gets_its_own(connect):
    with connect(ack_mode="enhanced") as client:
        client.send_raw(frame(msg("N-1", "NE", "NE")))
        client.send_raw(frame(msg("N-2", "NE", "NE", BAD_CONTENT)))
        # The first answer on the wire is the one for the third message: none for N-1 or N-2.
        assert answer(client.send(msg("N-3", "AL", "NE"))) == ("CA", "N-3")
    assert set(Message.objects.values_list("control_id", flat=True)) == {"N-1", "N-2", "N-3"}


def test_er_answers_only_errors_and_su_only_successes(connect):
    with connect(ack_mode="enhanced") as client:
        client.send_raw(frame(msg("ER-ok", "ER", "AL")))
        assert answer(client.send(msg("ER-bad", "ER", "AL", BAD_CONTENT))) == ("CE", "ER-bad")
        client.send_raw(frame(msg("SU-bad", "SU", "AL", BAD_CONTENT)))
        assert answer(client.send(msg("SU-ok", "SU", "AL"))) == ("CA", "SU-ok")
    assert Message.objects.count() == 4


def test_enhanced_mode_answers_a_message_without_msh15_and_16_in_original_mode(connect):
    with connect(ack_mode="enhanced") as client:
        assert answer(client.send(msg("O-1"))) == ("AA", "O-1")


def test_original_mode_is_the_default_and_ignores_msh15(connect):
    with connect() as client:
        assert answer(client.send(msg("D-1", "NE", "NE"))) == ("AA", "D-1")
        assert answer(client.send(msg("D-2", "NE", "NE", BAD_CONTENT))) == ("AE", "D-2")


@pytest.fixture
def refuse_control_id():
    """Make PostgreSQL refuse one control id: a real commit failure, not a simulated one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE channels_app_message ADD CONSTRAINT test_refuse"
            " CHECK (control_id <> 'REFUSED')"
        )
    yield "REFUSED"
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE channels_app_message DROP CONSTRAINT test_refuse")


def test_a_message_not_committed_is_answered_even_when_msh15_says_ne(connect, refuse_control_id):
    with connect(ack_mode="enhanced") as client:
        code, control_id = answer(client.send(msg(refuse_control_id, "NE", "NE")))
        assert (code, control_id) == ("CE", refuse_control_id)
        assert answer(client.send(msg("AFTER", "AL", "AL"))) == ("CA", "AFTER")
    assert list(Message.objects.values_list("control_id", flat=True)) == ["AFTER"]


def test_release_2_sends_the_commit_block_then_the_hl7_ack(connect):
    with connect(mllp_release=2) as client:
        assert client.send(msg("R2-1")) == COMMIT_ACK
        assert answer(client.receive()) == ("AA", "R2-1")
        # The sender's commit acknowledgement of our ACK block is taken, not stored or answered.
        client.send_raw(frame(COMMIT_ACK))
        assert client.send(msg("R2-2")) == COMMIT_ACK
        assert answer(client.receive()) == ("AA", "R2-2")
    assert sorted(Message.objects.values_list("control_id", flat=True)) == ["R2-1", "R2-2"]


def test_release_2_commit_block_comes_even_when_enhanced_mode_owes_no_ack(connect):
    with connect(mllp_release=2, ack_mode="enhanced") as client:
        assert client.send(msg("R2-NE", "NE", "NE")) == COMMIT_ACK
        assert client.send(msg("R2-AL", "AL", "NE")) == COMMIT_ACK
        assert answer(client.receive()) == ("CA", "R2-AL")


def test_release_2_naks_a_block_it_could_not_commit(connect, refuse_control_id):
    with connect(mllp_release=2) as client:
        assert client.send(msg(refuse_control_id)) == COMMIT_NAK
        assert answer(client.receive()) == ("AE", refuse_control_id)
        assert client.send(msg("R2-OK")) == COMMIT_ACK


def test_release_2_naks_an_oversize_block_kept_only_in_part(connect):
    with connect(mllp_release=2, max_message_bytes=2000) as client:
        assert client.send(msg("BIG", body="NTE|1||" + "x" * 5000 + "\r")) == COMMIT_NAK
        assert answer(client.receive()) == ("AR", "BIG")
        assert client.send(msg("SMALL")) == COMMIT_ACK
