"""The tolerant reader: separators, fields, repetitions, Z-segments, versions 2.2 to 2.8."""

from __future__ import annotations

import pytest

from adapters.codecs.hl7v2 import Encoding, Field, Message, Path, parse, split_segments

ADT = (
    "MSH|^~\\&|REG|HOSP|HUB|HUB|20240102030405||ADT^A01^ADT_A01|CTRL-1|P|2.5.1\r"
    "EVN|A01|20240102030405\r"
    "PID|1||111^^^HOSP^MR~222^^^STATE^SS||DOE^JOHN^Q^^DR||19800101|M|||1 MAIN ST^^TOWN^ST^12345\r"
    "PV1|1|I|W^101^A\r"
)


def test_header_shortcuts() -> None:
    m = parse(ADT.encode())
    assert m.message_type == "ADT^A01"
    assert (m.message_code, m.trigger_event) == ("ADT", "A01")
    assert m.control_id == "CTRL-1"
    assert m.version == "2.5.1"
    assert m.sending_application == "REG"
    assert m.sending_facility == "HOSP"
    assert m.charset == "utf-8"
    assert [s.name for s in m.segments] == ["MSH", "EVN", "PID", "PV1"]


def test_msh_numbering_follows_the_standard() -> None:
    msh = parse(ADT).msh
    assert msh[1] == "|"
    assert msh[2] == "^~\\&"
    assert msh[9] == "ADT^A01^ADT_A01"
    assert msh.get(1) == "|" and msh.get(2) == "^~\\&"
    assert msh.get(9, 3) == "ADT_A01"


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
def test_segment_separators(terminator: str) -> None:
    m = parse(ADT.replace("\r", terminator).encode())
    assert [s.name for s in m] == ["MSH", "EVN", "PID", "PV1"]
    assert m.get("PV1-3.2") == "101"


def test_mixed_separators_and_blank_lines() -> None:
    text = ADT.replace("EVN|", "\r\n\nEVN|").replace("\rPV1|", "\n\r\nPV1|")
    assert [s.name for s in parse(text)] == ["MSH", "EVN", "PID", "PV1"]


def test_line_feed_inside_a_field_of_a_cr_message_is_data() -> None:
    text = ADT + "OBX|1|TX|NOTE||first line\nsecond line\nPID is mentioned here|||||F\r"
    m = parse(text)
    assert [s.name for s in m][-1] == "OBX"
    assert m.get("OBX-5") == "first line\nsecond line\nPID is mentioned here"


def test_line_feed_before_a_segment_name_separates() -> None:
    m = parse(ADT + "OBX|1|TX|NOTE||text\nNTE|1||a note\r")
    assert [s.name for s in m][-2:] == ["OBX", "NTE"]


def test_split_segments_keeps_blank_lines_for_the_caller() -> None:
    assert split_segments("A|1\r\rB|2") == ["A|1", "", "B|2"]
    assert split_segments("MSH|x\r\nPID|1\r\n") == ["MSH|x", "PID|1", ""]


def test_empty_and_trailing_fields() -> None:
    m = parse(ADT + "NK1|1||||||||\r")
    nk1 = m.first("NK1")
    assert nk1 is not None
    assert len(nk1) == 10  # name + 9 fields, trailing empties kept
    assert nk1[5] == "" and nk1.get(5) == "" and nk1.get(5, 2) == ""
    assert nk1[99] == "" and nk1.get(99, 1, 1) == ""
    assert nk1.repetitions(4) == []
    assert m.get("NK1-9") == ""


def test_trailing_spaces_after_segments_are_ignored() -> None:
    m = parse(ADT.replace("\r", " \r"))
    assert m.get("PV1-3.3") == "A"
    assert m.version == "2.5.1"


def test_repetitions_and_components() -> None:
    m = parse(ADT)
    pid = m.first("PID")
    assert pid is not None
    reps = pid.repetitions(3)
    assert [r.component(1) for r in reps] == ["111", "222"]
    assert pid.field(3, 2).component(4) == "STATE"
    assert pid.get(3, 5, rep=2) == "SS"
    assert m.get("PID-3(2).5") == "SS"
    assert m.get("PID-3(3).1") == ""
    assert m.get_all("PID-3(*).1") == ["111", "222"]
    assert m.get_all("PID-3(2).1") == ["222"]
    assert m.get_all("PID-3(5).1") == []
    assert m.get_all("ZZZ-1") == []
    assert m.get("PID-5") == "DOE"  # the first component, as HL7 reads a composite as a whole
    assert m.get("PID-5.5") == "DR"
    assert pid.field(5).value == "DOE^JOHN^Q^^DR"


def test_subcomponents() -> None:
    m = parse(ADT + "OBX|1|CE|X&Y&Z^text\r")
    assert m.get("OBX-3.1.2") == "Y"
    assert m.get("OBX-3.1") == "X"  # a component read whole gives its first subcomponent
    assert m.first("OBX").field(3).subcomponents(1) == ["X", "Y", "Z"]  # type: ignore[union-attr]


def test_segment_occurrences() -> None:
    m = parse(ADT + "OBX|1|NM|A||1\rOBX|2|NM|B||2\rOBX|3|NM|C||3\r")
    assert m.get("OBX(3)-3") == "C"
    assert m.get("OBX(4)-3") == ""
    assert [s.get(1) for s in m.all("OBX")] == ["1", "2", "3"]
    assert m.all("NTE") == [] and m.first("NTE") is None


def test_z_segments_and_unknown_segments_are_kept_and_reachable() -> None:
    m = parse(ADT + "ZPI|1|custom^value\rQQQ|x\rZ01|2\r")
    assert [s.name for s in m][-3:] == ["ZPI", "QQQ", "Z01"]
    assert m.get("ZPI-2.2") == "value"
    assert m.get("QQQ-1") == "x"
    assert m.first("Z01")[1] == "2"  # type: ignore[index]
    assert m.first("ZPI").index == 5  # type: ignore[union-attr]


def test_non_default_encoding_characters() -> None:
    # field ^, component ~, repetition |, escape \, subcomponent & (hapi's A24 sample)
    text = (
        "MSH^~|\\&^SEND^FAC^RECV^FAC^20120918173931^^ADT~A24^C1^T^2.4\r"
        "PID^1^^11111~~~FOO&&0363|22222~~~BAR^^SMITH~JOHN\r"
    )
    m = parse(text)
    assert m.enc == Encoding("^", "~", "|", "\\", "&")
    assert m.message_type == "ADT^A24"  # joined with a caret whatever the encoding
    assert m.get("PID-3.1") == "11111"
    assert m.get("PID-3(2).4") == "BAR"
    assert m.get("PID-3.4.3") == "0363"
    assert m.get("PID-5.2") == "JOHN"


def test_short_msh2_falls_back_to_the_defaults() -> None:
    m = parse("MSH|^~\\|A|B|||||ORU^R01|1|P|2.3\rOBX|1|ST|X&Y||v\r")
    assert m.enc.subcomponent == "&"
    assert m.get("OBX-3.1.2") == "Y"


def test_doubled_backslash_in_msh2_is_read_as_one_escape_character() -> None:
    m = parse("MSH|^~\\\\&|A|B|||||ADT^A01|1|P|2.6\nPID|1||X\\T\\Y\n")
    assert m.enc == Encoding("|", "^", "~", "\\", "&")
    assert m.get("PID-3") == "X&Y"


def test_truncation_character_of_v27() -> None:
    m = parse("MSH|^~\\&#|A|B|||||ORU^R01|1|P|2.7\rOBX|1|ST|X||cut#\r")
    assert m.enc.truncation == "#"
    assert m.get("OBX-5") == "cut#"


def test_bom_mllp_bytes_and_padding_around_the_message_are_ignored() -> None:
    data = b"\x0b\xef\xbb\xbf" + ADT.encode() + b"\x1c\r\n\x00 "
    assert parse(data).control_id == "CTRL-1"


def test_quoted_null_is_returned_as_sent() -> None:
    m = parse(ADT + 'PD1|""|1\r')
    assert m.get("PD1-1") == '""'


@pytest.mark.parametrize(
    "version", ["2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"]
)
def test_every_version_reads_the_same_way(version: str) -> None:
    m = parse(ADT.replace("|2.5.1\r", f"|{version}\r"))
    assert m.version == version
    assert m.get("PID-5.2") == "JOHN"


def test_version_with_components() -> None:
    assert parse(ADT.replace("|2.5.1\r", "|2.5^USA\r")).version == "2.5"


def test_message_without_trigger_event() -> None:
    m = parse("MSH|^~\\&|A|B|||||ORF|1|P|2.3\rQRD|x\r")
    assert m.message_type == "ORF"
    assert m.trigger_event == ""


def test_str_and_bytes_inputs_agree() -> None:
    assert parse(ADT).encode() == parse(ADT.encode()).encode() == ADT


def test_encode_round_trip_keeps_raw_fields() -> None:
    text = ADT + "OBX|1|FT|X||a\\.br\\b \\F\\ c|||||F\r"
    assert parse(text).encode() == text
    assert parse(text).encode("\n") == text.replace("\r", "\n")


def test_message_is_iterable_and_repr_is_short() -> None:
    m = parse(ADT)
    assert len(list(m)) == 4
    assert repr(m) == "Message(ADT^A01, 'CTRL-1', 4 segments)"
    assert isinstance(m, Message)
    assert repr(m.msh.field(9)) == "Field('ADT^A01^ADT_A01')"
    assert isinstance(m.msh.field(9), Field)


def test_path_parse_and_str() -> None:
    p = Path.parse("OBX(2)-5(3).1.2")
    assert (p.segment, p.occurrence, p.field, p.repetition, p.component, p.subcomponent) == (
        "OBX",
        2,
        5,
        3,
        1,
        2,
    )
    assert str(p) == "OBX(2)-5(3).1.2"
    assert str(Path.parse("PID-3")) == "PID-3"
    assert Path.parse("PID-3(*)").repetition == 0
    for bad in ("PID", "PID-0", "pid-3", "PID-3.0", "PID-3..1", "PID-x"):
        with pytest.raises(ValueError):
            Path.parse(bad)
