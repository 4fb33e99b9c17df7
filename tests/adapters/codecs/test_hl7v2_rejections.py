"""What the reader refuses, and that every refusal names the segment, the field and the reason."""

from __future__ import annotations

import pytest

from adapters.base import AdapterError
from adapters.codecs.hl7v2 import HL7Error, parse

MSH = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|CTRL|P|2.5"


def _reject(data: bytes | str) -> HL7Error:
    with pytest.raises(HL7Error) as caught:
        parse(data)
    return caught.value


def test_hl7error_carries_its_place_and_is_permanent() -> None:
    err = _reject("MSH|&&&&|A|B|||||ORU^R01|1|P|2.5.1\r")
    assert isinstance(err, AdapterError)
    assert err.permanent is True
    assert (err.segment_index, err.segment, err.field) == (1, "MSH", 2)
    assert err.location == "MSH-2"
    assert err.bare_reason.startswith("MSH-2 encoding characters '&&&&'")
    assert str(err) == f"{err.bare_reason} (MSH-2, segment #1)"
    assert err.reason == str(err)


@pytest.mark.parametrize("data", [b"", b"   \r\n", "\x0b\x1c\r", "\ufeff"])
def test_empty_message(data: bytes | str) -> None:
    assert _reject(data).bare_reason == "the message is empty"


def test_text_before_msh_is_named() -> None:
    err = _reject("[SOM]" + MSH + "\rPID|1\r[EOM]")
    assert "'[SOM]' precedes MSH" in err.bare_reason
    assert err.segment_index == 1


def test_segments_joined_with_spaces_are_detected() -> None:
    err = _reject(MSH + "||| EVN|A01|20240101 PID|1||123||DOE^JOHN PV1|1|I\n")
    assert "separated by spaces" in err.bare_reason
    assert "EVN starts inside MSH-15" in err.bare_reason
    assert (err.segment, err.field, err.segment_index) == ("MSH", 15, 1)


def test_a_lone_msh_with_spaces_in_its_values_is_fine() -> None:
    m = parse("MSH|^~\\&|MAIN LAB|ST JOHN ICU|||20240101||ACK^A01|1|P|2.5\r")
    assert m.sending_facility == "ST JOHN ICU"


def test_batch_files_are_pointed_to_split_batch() -> None:
    for header in ("FHS", "BHS"):
        err = _reject(f"{header}|^~\\&|A\r{MSH}\rPID|1\r")
        assert "split_batch" in err.bare_reason
        assert (err.segment, err.segment_index) == (header, 1)


def test_second_msh() -> None:
    err = _reject(f"{MSH}\rPID|1\r{MSH}\rPID|2\r")
    assert "a second MSH" in err.bare_reason
    assert (err.segment, err.segment_index) == ("MSH", 3)


@pytest.mark.parametrize("name", ["BHS", "BTS", "FTS", "FHS"])
def test_batch_envelope_inside_a_message(name: str) -> None:
    err = _reject(f"{MSH}\rEVN|A01\r{name}|1\rPID|1\r")
    assert f"batch segment {name} inside a message" in err.bare_reason
    assert (err.segment, err.segment_index) == (name, 3)


@pytest.mark.parametrize("line", ["pid|1", "PI|1", "PIDX|1", "1AB|x", "P-D|1", "ÄBC|1", "   x"])
def test_bad_segment_name(line: str) -> None:
    err = _reject(f"{MSH}\rEVN|A01\r{line}\r")
    assert "is not three upper-case letters or digits" in err.bare_reason
    assert err.segment_index == 3


def test_message_must_start_with_msh() -> None:
    err = _reject("PID|1||123\rPV1|1\r")
    assert err.bare_reason == "a message must start with an MSH segment, found PID"
    assert (err.segment, err.segment_index) == ("PID", 1)
    assert "found 'hello world'" in _reject("hello world").bare_reason


def test_truncated_msh() -> None:
    err = _reject("MSH|^~\\")
    assert err.bare_reason == "the MSH segment is truncated"


@pytest.mark.parametrize("sep", ["A", "1", " "])
def test_bad_field_separator(sep: str) -> None:
    err = _reject(f"MSH{sep}^~\\&{sep}A{sep}B\r")
    assert err.location == "MSH-1"


@pytest.mark.parametrize("msh2", ["", "&&&&", "^^\\&", "a~\\&", "^~\\&^", "^~\\\\&&"])
def test_bad_encoding_characters(msh2: str) -> None:
    err = _reject(f"MSH|{msh2}|A|B|||||ADT^A01|1|P|2.5\r")
    assert err.location == "MSH-2"
    assert err.segment_index == 1


def test_empty_message_type() -> None:
    err = _reject("MSH|^~\\&|A|B|||||^|1|P|2.5\rPID|1\r")
    assert err.bare_reason == "MSH-9 (message type) is empty"
    assert err.location == "MSH-9"


def test_wrong_input_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]


def test_msh_that_ends_before_msh2_is_refused_with_its_place():
    error = _reject(b"MSH\x00\rPID|1\r")  # found by the listener fuzz: was an IndexError
    assert error.segment == "MSH" and error.field == 2
