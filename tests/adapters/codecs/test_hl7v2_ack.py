"""ACKs in the sender's dialect, and NAKs for input the reader refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.codecs.hl7v2 import parse
from adapters.codecs.hl7v2_ack import Header, build_ack

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
ADT = "MSH|^~\\&|REG|HOSP|HUB|HUBFAC|20240102||ADT^A01^ADT_A01|C42|P|2.5.1\rPID|1\r"


def test_ack_swaps_sender_and_receiver_and_echoes_the_control_id() -> None:
    ack = parse(build_ack(Header.of(parse(ADT)), "AA", control_id="ACK1", now=NOW))
    assert ack.message_type == "ACK^A01"
    assert (ack.msh[3], ack.msh[4], ack.msh[5], ack.msh[6]) == ("HUB", "HUBFAC", "REG", "HOSP")
    assert ack.msh[7] == "20240102030405+0000"
    assert ack.control_id == "ACK1" and ack.version == "2.5.1"
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "C42"
    assert ack.first("ERR") is None


def test_nak_in_v25_and_later_uses_err2_err3() -> None:
    header = Header.of(parse(ADT))
    text = build_ack(
        header,
        "AE",
        control_id="N1",
        text="bad | value",
        error_code="required_field",
        error_location=("PID", 1, 5),
        now=NOW,
    )
    nak = parse(text)
    assert nak.get("MSA-3") == "bad | value"
    assert (nak.get("ERR-2.1"), nak.get("ERR-2.2"), nak.get("ERR-2.3")) == ("PID", "1", "5")
    assert (nak.get("ERR-3.1"), nak.get("ERR-4"), nak.get("ERR-8")) == ("101", "E", "bad | value")


def test_nak_before_v25_uses_err1() -> None:
    header = Header.of(parse(ADT.replace("2.5.1", "2.3")))
    nak = parse(
        build_ack(header, "AR", control_id="N1", text="nope", error_location=("PID", 1, 3), now=NOW)
    )
    assert (nak.get("ERR-1.1"), nak.get("ERR-1.3"), nak.get("ERR-1.4.1")) == ("PID", "3", "207")


def test_ack_uses_the_senders_encoding_characters() -> None:
    custom = "MSH^~|\\&^S^F^R^G^2012^^ADT~A24^C7^T^2.4\rPID^1\r"
    ack = build_ack(Header.of(parse(custom)), "AA", control_id="A", now=NOW)
    assert ack.startswith("MSH^~|\\&^R^G^S^F^")
    assert parse(ack).get("MSA-2") == "C7"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "MSH",
        "MSH\rPID|1|2|3|4",
        "xxMSH\nabcdefgh",
        "MSH|&&&&|A|B|||||ORU^R01|9|P|2.5",
    ],
)
def test_salvage_never_fails(text: str) -> None:
    header = Header.salvage(text)
    assert build_ack(header, "AR", control_id="X", text="refused").startswith("MSH")


def test_salvage_reads_what_it_can() -> None:
    header = Header.salvage("[SOM]" + ADT)
    assert (header.sending_application, header.control_id, header.trigger_event) == (
        "REG",
        "C42",
        "A01",
    )
    bad = Header.salvage("MSH|&&&&|A|B|||||ORU^R01|9|P|2.5")
    assert bad.control_id == "9" and bad.enc.component == "^"


# MSH values made of plain text, separators and escapes, in any mix (values[n] is MSH-n).
msh_value = st.text(alphabet="AB1.^~\\&F X", max_size=12)


@given(st.lists(msh_value, min_size=17, max_size=17))
@settings(max_examples=300, database=None)
def test_header_reads_msh_as_the_reader_does(values: list[str]) -> None:
    values[9] = "ADT" + values[9]  # a message type, or the reader refuses the message
    message = parse(("MSH|^~\\&|" + "|".join(values[3:]) + "\rPID|1\r").encode())
    msh = message.msh
    header = Header.of(message)
    read = (
        header.message_type,
        header.trigger_event,
        header.control_id,
        header.processing_id,
        header.version,
        header.accept_ack_type,
        header.application_ack_type,
    )
    assert read == (
        msh.get(9, 1),
        msh.get(9, 2),
        msh.get(10),
        msh.get(11) or "P",
        msh.get(12, 1) or "2.5.1",
        msh.get(15),
        msh.get(16),
    )
