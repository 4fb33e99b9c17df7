"""Batch files: FHS/BHS/BTS/FTS envelopes and messages back to back, split into messages."""

from __future__ import annotations

import pytest

from adapters.codecs.hl7v2 import HL7Error, parse
from adapters.codecs.hl7v2_batch import is_batch, read_batch, split_batch


def _msg(control_id: str, body: str = "PID|1||123") -> str:
    return f"MSH|^~\\&|A|B|C|D|20240101||ADT^A04|{control_id}|P|2.5\r{body}\r"


def test_full_envelope() -> None:
    data = (
        "FHS|^~\\&|A|B\r"
        "BHS|^~\\&|A|B\r" + _msg("1") + _msg("2") + "BTS|2\r"
        "BHS|^~\\&|A|B\r" + _msg("3") + "BTS|1\r"
        "FTS|2\r"
    ).encode()
    batch = read_batch(data)
    assert [parse(m).control_id for m in batch.messages] == ["1", "2", "3"]
    assert batch.file_headers == [b"FHS|^~\\&|A|B"]
    assert len(batch.batch_headers) == 2
    assert batch.trailers == [b"BTS|2", b"BTS|1", b"FTS|2"]
    assert split_batch(data) == batch.messages


def test_each_message_keeps_its_bytes_with_cr_terminators() -> None:
    one = _msg("1", "PID|1||123||Müller").encode("latin-1")  # not UTF-8: kept untouched
    data = b"BHS|^~\\&\n" + one.replace(b"\r", b"\n") + b"BTS|1\n"
    assert split_batch(data) == [one]
    assert parse(split_batch(data)[0]).get("PID-5") == "Müller"


def test_headers_without_trailers() -> None:
    data = ("FHS|^~\\&|||||\rBHS|^~\\&|||||\r" + _msg("9")).encode()
    assert [parse(m).control_id for m in split_batch(data)] == ["9"]


def test_messages_back_to_back_without_envelope() -> None:
    data = (_msg("1") + _msg("2") + _msg("3", "SCH|1\rPID|1")).encode()
    messages = split_batch(data)
    assert [parse(m).control_id for m in messages] == ["1", "2", "3"]
    assert [s.name for s in parse(messages[2])] == ["MSH", "SCH", "PID"]


def test_a_single_message_is_a_batch_of_one() -> None:
    assert split_batch(_msg("1").encode()) == [_msg("1").encode()]
    assert split_batch(b"\xef\xbb\xbf" + _msg("1").encode() + b"\r\n") == [_msg("1").encode()]


def test_envelope_without_messages() -> None:
    assert split_batch(b"FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|1\r") == []


def test_blank_lines_and_crlf() -> None:
    data = ("BHS|^~\\&\r\n\r\n" + _msg("1").replace("\r", "\r\n") + "\r\nBTS|1\r\n").encode()
    assert [parse(m).control_id for m in split_batch(data)] == ["1"]


def test_concatenated_files() -> None:
    one = "FHS|^~\\&\rBHS|^~\\&\r" + _msg("1") + "BTS|1\rFTS|1\r"
    data = (one + one.replace("|1|P|", "|2|P|")).encode()
    assert [parse(m).control_id for m in split_batch(data)] == ["1", "2"]


def test_segments_outside_any_message_are_an_error() -> None:
    with pytest.raises(HL7Error) as caught:
        split_batch(b"BHS|^~\\&\rEVN|A04\rPID|1\rBTS|1\r")
    err = caught.value
    assert "segment EVN is outside any message" in err.bare_reason
    assert "follows BHS at segment #1" in err.bare_reason
    assert (err.segment, err.segment_index) == ("EVN", 2)


def test_header_inside_a_message_leaves_its_rest_outside() -> None:
    data = ("BHS|^~\\&\r" + _msg("1", "EVN|A04\rBHS|^~\\&\rPID|1") + "BTS|1\r").encode()
    with pytest.raises(HL7Error) as caught:
        split_batch(data)
    assert (caught.value.segment, caught.value.segment_index) == ("PID", 5)


@pytest.mark.parametrize(
    ("trailer", "where"), [("BTS|3", "BTS-1 says 3 messages but 2"), ("FTS|2", "FTS-1 says 2")]
)
def test_trailer_counts_must_match(trailer: str, where: str) -> None:
    data = "FHS|^~\\&\rBHS|^~\\&\r" + _msg("1") + _msg("2")
    data += f"{trailer}\r" if trailer.startswith("BTS") else f"BTS|2\r{trailer}\r"
    with pytest.raises(HL7Error) as caught:
        split_batch(data.encode())
    assert where in caught.value.bare_reason
    assert caught.value.field == 1


def test_trailer_without_a_count_is_fine() -> None:
    data = ("BHS|^~\\&\r" + _msg("1") + "BTS\rFTS||comment\r").encode()
    assert len(split_batch(data)) == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the batch is empty"),
        (b" \r\n ", "the batch is empty"),
        (b"[SOM]MSH|^~\\&|A\r", "precedes MSH"),
        (b"PID|1\r", "must start with an MSH segment, found PID"),
        (b"BHS|^~\\&\rbad line\r", "is not three upper-case letters"),
    ],
)
def test_unreadable_files(data: bytes, reason: str) -> None:
    with pytest.raises(HL7Error) as caught:
        split_batch(data)
    assert reason in caught.value.bare_reason


def test_is_batch() -> None:
    assert is_batch(b"FHS|^~\\&\r")
    assert is_batch(b"\xef\xbb\xbfBHS|^~\\&\r")
    assert is_batch((_msg("1") + _msg("2")).encode())
    assert not is_batch(_msg("1").encode())
    assert not is_batch(b"")


def test_bytes_only() -> None:
    with pytest.raises(TypeError):
        split_batch("MSH|^~\\&")  # type: ignore[arg-type]
