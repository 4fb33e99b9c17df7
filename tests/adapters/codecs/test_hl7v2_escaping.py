"""Escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\ and friends, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.codecs.hl7v2 import (
    DEFAULT_ENCODING,
    Encoding,
    Raw,
    build_segment,
    encode_value,
    escape,
    parse,
    unescape,
)

CUSTOM = Encoding("^", "~", "|", "\\", "&")  # hapi's non-default delimiters
WITH_TRUNCATION = Encoding("|", "^", "~", "\\", "&", "#")


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"),
        ("line\\.br\\next", "line\nnext"),
        ("\\X0D\\\\X0A\\", "\r\n"),
        ("caf\\XC3A9\\", "café"),  # multi-byte: UTF-8
        ("caf\\XE9\\", "café"),  # a lone high byte: latin-1
        ("\\H\\bold\\N\\", "bold"),
        ("a\\.sp\\b", "a\nb"),
        ("\\.in+4\\x", "x"),
        ("\\Zcustom\\", "\\Zcustom\\"),  # unknown: kept as sent
        ("\\C2842\\", "\\C2842\\"),
        ("\\Xzz\\", "\\Xzz\\"),  # not hex: kept
        ("tail\\", "tail\\"),  # a lone escape character: kept
        ("no escapes", "no escapes"),
        ("", ""),
    ],
)
def test_unescape(escaped: str, text: str) -> None:
    assert unescape(escaped) == text


def test_unescape_uses_the_message_encoding() -> None:
    assert unescape("a\\F\\b\\S\\c\\R\\d", CUSTOM) == "a^b~c|d"
    assert unescape("x\\P\\", WITH_TRUNCATION) == "x#"
    assert unescape("x\\P\\") == "x\\P\\"  # no truncation character declared: kept


def test_escape() -> None:
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert escape("two\r\nlines\rhere\nend") == "two\\.br\\lines\\.br\\here\\.br\\end"
    assert escape("plain") == "plain"
    assert escape("") == ""
    assert escape("a#b", WITH_TRUNCATION) == "a\\P\\b"


def test_values_read_from_a_message_are_unescaped_after_splitting() -> None:
    m = parse("MSH|^~\\&|A|B|||||ORU^R01|1|P|2.5\rOBX|1|ST|X||a\\S\\b^c\\T\\d&e\r")
    assert m.get("OBX-5.1") == "a^b"
    assert m.get("OBX-5.2.1") == "c&d"
    assert m.get("OBX-5.2.2") == "e"


def test_build_segment_escapes_values_and_keeps_raw() -> None:
    seg = build_segment(
        "OBX",
        {1: "1", 2: "ST", 3: ["CODE", "Text & more"], 5: ("a|b", "c"), 6: Raw("mg^milligram")},
    )
    assert seg == "OBX|1|ST|CODE^Text \\T\\ more||a\\F\\b~c|mg^milligram"
    assert build_segment("NTE", {}) == "NTE"
    assert encode_value([["a", "b&c"], "d"]) == "a&b\\T\\c^d"
    assert encode_value(None) == "" and encode_value(5) == "5"


# Line breaks are normalised to \.br\ on the way out, so they come back as "\n".
def _normalised(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=300, database=None)
@given(st.text())
def test_escape_round_trip(text: str) -> None:
    assert unescape(escape(text)) == _normalised(text)


@settings(max_examples=200, database=None)
@given(st.text(alphabet=st.sampled_from(list("|^~\\&#abc \r\n.XFSTREbr0D"))))
def test_escape_round_trip_on_separator_heavy_text(text: str) -> None:
    for enc in (DEFAULT_ENCODING, CUSTOM, WITH_TRUNCATION):
        assert unescape(escape(text, enc), enc) == _normalised(text)


@settings(max_examples=200, database=None)
@given(st.text())
def test_escaped_text_holds_no_separator(text: str) -> None:
    escaped = escape(text)
    assert not set(escaped) & {"|", "^", "~", "&", "\r", "\n"}


@settings(max_examples=200, database=None)
@given(st.text())
def test_a_value_survives_a_message_round_trip(text: str) -> None:
    value = text.replace("\x00", "")
    segment = build_segment("OBX", {1: "1", 2: "TX", 5: value})
    m = parse("MSH|^~\\&|A|B|||||ORU^R01|1|P|2.5\r" + segment + "\r")
    # Spaces after a segment's last field are dropped (the trailing-space quirk), as are
    # framing bytes at the very end of a message; everything else comes back.
    assert m.get("OBX-5") == _normalised(value).rstrip(" \t\x0b\x1c\ufeff")


@settings(max_examples=300, database=None)
@given(st.text())
def test_unescape_never_fails(text: str) -> None:
    assert isinstance(unescape(text), str)
