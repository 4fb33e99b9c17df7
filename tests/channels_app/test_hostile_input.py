"""10,000 hostile inputs through the real listener over real sockets (bench/fuzz_mllp.py makes
them): every frame is answered, every answer is truthful and stored, nothing crashes or hangs."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter

import pytest

from adapters.codecs import hl7v2
from adapters.codecs.hl7v2_ack import Header, build_ack
from adapters.transports.mllp import MLLPClient
from bench.fuzz_mllp import corpus_messages, hostile_inputs, run
from channels_app.models import Message
from tests import factories
from tests.support import require_corpus

pytestmark = pytest.mark.django_db(transaction=True)

CASES = int(os.environ.get("FUZZ_CASES", "10000"))
SEED = int(os.environ.get("FUZZ_SEED", "2575"))


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def listener_log():
    logger = logging.getLogger("channels_app.sources.mllp")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_every_hostile_input_is_answered_truthfully_and_stored(mllp_port, listener, listener_log):
    channel = factories.channel(
        mllp_port,
        dedupe_window_s=0,  # every answer is one row: the figures add up exactly
        max_message_bytes=200_000,
        source_config={"host": "127.0.0.1", "port": mllp_port, "frame_timeout_s": 10},
    )
    thread = listener(channel)
    cases = hostile_inputs(CASES, SEED, corpus_messages(require_corpus()))
    figures = run(cases, mllp_port, connections=8, timeout=10)
    reader_failures = [line for line in listener_log if "HL7 reader failed" in line]
    connection_failures = [
        line for line in listener_log if "connection from" in line and "failed" in line
    ]
    print(
        f"\nhostile input (seed {SEED}): {figures.summary()}; HL7 reader exceptions other than "
        f"HL7Error {len(reader_failures)} (answered AR), connection handler failures "
        f"{len(connection_failures)}\nkinds: {Counter(c.kind for c in cases).most_common()}"
    )

    assert figures.hangs == 0 and figures.dropped_connections == 0 and figures.not_stored == 0
    assert figures.unanswered == [], figures.unanswered[:3]
    assert figures.unreadable_acks == [] and figures.extra_acks == [], (
        figures.unreadable_acks[:3],
        figures.extra_acks[:3],
    )
    assert connection_failures == [] and thread.thread.is_alive()
    assert max(figures.latencies) < 5.0

    # Every ACK names its stored row (MSH-10 = HUB<id>); AA only for a stored, readable message.
    rows = dict(Message.objects.filter(channel=channel).values_list("id", "status"))
    assert len(rows) == len(figures.acks)
    details = dict(
        Message.objects.filter(channel=channel, status=Message.Status.ERROR).values_list(
            "id", "error_detail"
        )
    )
    for code, ack_id in figures.acks:
        message_id = int(re.fullmatch(r"HUB(\d+)", ack_id)[1])
        expected = Message.Status.RECEIVED if code == "AA" else Message.Status.ERROR
        assert rows[message_id] == expected, (code, message_id)
        assert code == "AA" or details[message_id]

    # Still serving a well-formed message.
    with MLLPClient("127.0.0.1", mllp_port) as client:
        assert hl7v2.parse(client.send(factories.adt_a01("AFTER-FUZZ"))).get("MSA-1") == "AA"


def test_the_codec_raises_only_hl7error_on_hostile_input():
    failures: Counter = Counter()
    for case in hostile_inputs(2000, SEED, corpus_messages(require_corpus())):
        if not case.framed:
            continue
        body = case.data[1:-2]
        try:
            message = hl7v2.parse(body)
            header = Header.of(message)
        except hl7v2.HL7Error:
            header = Header.salvage(hl7v2.decode_bytes(body)[0])
        except Exception as exc:
            failures[type(exc).__name__] += 1
            continue
        build_ack(header, "AE", control_id="X", text="reason")
    failures.update(_known_reader_crash())
    assert not failures, failures


def _known_reader_crash() -> Counter:
    try:
        hl7v2.parse(b"MSH\x00\rPID|1\r")
    except hl7v2.HL7Error:
        return Counter()
    except Exception as exc:
        return Counter({type(exc).__name__: 1})
    return Counter()


# What the fuzzing found, pinned: each broke an ACK or a whole commit batch before.


@pytest.fixture
def client(mllp_port, listener):
    listener(factories.channel(mllp_port))
    with MLLPClient("127.0.0.1", mllp_port) as c:
        yield c


def test_a_nul_in_msh10_does_not_fail_the_batch_it_is_committed_with(client):
    ack = hl7v2.parse(client.send(factories.adt_a01("NUL\x00ID")))
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "NULID"
    assert Message.objects.get().control_id == "NULID"


def test_escaped_line_breaks_and_separators_in_msh_do_not_split_the_ack(client):
    raw = b"MSH|^~\\&|A\\F\\X|B|C|D|20240101||ADT^A\\X0D\\01|CTL\\X1C0D\\1|P|2.5\\F\\1\rPID|1\r"
    ack = hl7v2.parse(client.send(raw))
    # ADT^A<CR>01 has no map: AR, its reason (naming the type) in MSA-3 and ERR, unsplit.
    assert ack.get("MSA-1") == "AR" and ack.get("MSH-12") == "2.5|1"
    assert "no built-in map" in ack.get("MSA-3")
    assert [s.name for s in ack.segments] == ["MSH", "MSA", "ERR"] and ack.trigger_event == "A\n01"


def test_a_header_with_unusable_separators_is_answered_in_the_default_ones(client):
    ack = client.send(b"MSH\t^~\\&\tEHR\tFAC\tHUB\tHUB\t2024\t\tADT^A01\tT-1\tP\t2.5\rPID\t1\r")
    parsed = hl7v2.parse(ack)
    assert ack.startswith(b"MSH|^~\\&|") and parsed.get("MSA-1") == "AR"
    assert "field separator" in parsed.get("MSA-3")


def test_a_reader_crash_is_answered_ar_stored_and_the_connection_survives(client):
    ack = hl7v2.parse(client.send(b"MSH\x00\rPID|1\r"))
    assert ack.get("MSA-1") == "AR"
    assert Message.objects.get().status == Message.Status.ERROR
    assert hl7v2.parse(client.send(factories.adt_a01("NEXT"))).get("MSA-1") == "AA"
