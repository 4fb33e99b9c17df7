"""Character sets: UTF-8 first, then MSH-18, then latin-1 for what UTF-8 cannot read."""

from __future__ import annotations

import codecs

from adapters.codecs.hl7v2 import MIXED_CHARSET, decode_bytes, parse


def _msh(charset: str = "") -> str:
    fields = ["MSH", "^~\\&", "A", "B", "C", "D", "20240101", "", "ADT^A01", "1", "P", "2.5"]
    fields += [""] * 5 + [charset]  # MSH-13..17 empty, MSH-18
    return "|".join(fields)


def test_utf8_is_read_as_utf8_even_when_msh18_says_latin1() -> None:
    data = (_msh("8859/1") + "\rPID|1||1||Müller^José\r").encode("utf-8")
    m = parse(data)
    assert m.charset == "utf-8"
    assert m.get("PID-5.1") == "Müller"


def test_msh18_is_used_when_the_bytes_are_not_utf8() -> None:
    data = (_msh("8859/1") + "\rPID|1||1||Müller\r").encode("latin-1")
    assert decode_bytes(data)[1] == "latin-1"
    assert parse(data).get("PID-5.1") == "Müller"
    cyrillic = (_msh("8859/5") + "\rPID|1||1||Иванов\r").encode("iso8859-5")
    m = parse(cyrillic)
    assert (m.charset, m.get("PID-5.1")) == ("iso8859-5", "Иванов")


def test_msh18_repetitions_use_the_first() -> None:
    data = (_msh("8859/7~UNICODE UTF-8") + "\rPID|1||1||Αλφα\r").encode("iso8859-7")
    assert parse(data).get("PID-5.1") == "Αλφα"


def test_latin1_fallback_without_a_declared_charset() -> None:
    data = (_msh() + "\rPID|1||1||Ångström\r").encode("latin-1")
    m = parse(data)
    assert (m.charset, m.get("PID-5.1")) == ("latin-1", "Ångström")


def test_unknown_msh18_falls_back_to_latin1() -> None:
    data = (_msh("KLINGON") + "\rPID|1||1||Ærø\r").encode("latin-1")
    assert parse(data).get("PID-5.1") == "Ærø"


def test_mixed_utf8_and_latin1_bytes_keep_both_readable() -> None:
    data = _msh().encode() + b"\rPID|1||1||D\xfcrer^Jos\xc3\xa9\r"  # latin-1 ü, UTF-8 é
    m = parse(data)
    assert m.charset == MIXED_CHARSET
    assert (m.get("PID-5.1"), m.get("PID-5.2")) == ("Dürer", "José")


def test_utf8_bom_is_dropped() -> None:
    m = parse(codecs.BOM_UTF8 + (_msh() + "\rPID|1\r").encode())
    assert m.msh.name == "MSH" and m.charset == "utf-8"


def test_utf16_with_and_without_bom() -> None:
    text = _msh("UNICODE UTF-16") + "\rPID|1||1||Zoë\r"
    for data in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be")):
        m = parse(data)
        assert (m.charset, m.get("PID-5.1")) == ("utf-16", "Zoë")


def test_iso2022_jp_declared_in_msh18() -> None:
    text = _msh("ISO IR87") + "\rPID|1||1||山田^太郎\r"
    m = parse(text.encode("iso2022_jp"))
    assert m.charset == "iso2022_jp"
    assert m.get("PID-5.1") == "山田"


def test_decode_bytes_never_raises_on_garbage() -> None:
    for data in (
        b"",
        b"\xff\xfe\x00",
        b"MSH",
        b"MSH|^~\\&|" + bytes(range(256)),
        b"\x00M\x00S\x00H",
    ):
        text, charset = decode_bytes(data)
        assert isinstance(text, str) and charset
