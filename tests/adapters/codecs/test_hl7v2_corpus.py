"""Every file of the shared corpus ($HL7_CORPUS, default ../shared/corpus): read, or refused with
a clear HL7Error; no other exception escapes. What MANIFEST.tsv says is checked where it applies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.codecs.hl7v2 import HL7Error, Message, parse
from adapters.codecs.hl7v2_batch import is_batch, split_batch
from adapters.codecs.hl7v2_structure import Issue, describe, validate_structure
from tests.adapters.codecs._corpus import corpus_files, manifest

# The malformed files the codec refuses, and the words its reason must contain. Every other
# file in the corpus must be read (malformed/ included: see README "tolerated").
REJECTED = {
    "malformed/cdc_bad_encoding_chars_msh2.hl7": "MSH-2 encoding characters '&&&&' repeat",
    "malformed/nhc_adt_a01_segments_space_separated.hl7": "separated by spaces",
    "malformed/oie_som_eom_text_markers.hl7": "'[SOM]' precedes MSH",
    "malformed/pythonhl7_batch_missing_msh.hl7": "segment EVN is outside any message",
    "malformed/pythonhl7_bhs_inside_message.hl7": "segment PID is outside any message",
}

FILES = corpus_files()
MANIFEST = manifest()


def _read(relative: str, data: bytes) -> list[Message]:
    """How a hub reads a file: split it when it is a batch, else parse it as one message."""
    if relative.startswith("batch/") or is_batch(data):
        return [parse(m) for m in split_batch(data)]
    return [parse(data)]


def _naive_control_id(data: bytes) -> str | None:
    """MSH-10 read the simplest way there is, to cross-check the reader (None: not applicable)."""
    first = data.lstrip(b"\xef\xbb\xbf").replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    line = first.split(b"\r", 1)[0]
    fields = line.split(line[3:4])
    if len(fields) < 10 or b"\\" in fields[9]:
        return None
    return fields[9].decode("utf-8", "replace")


def test_the_corpus_is_there(hl7_corpus: Path) -> None:
    assert len(FILES) >= 50, f"expected the shared corpus at {hl7_corpus}"
    assert set(REJECTED) <= set(FILES)


@pytest.mark.parametrize("relative", FILES or [pytest.param("", id="no-corpus")])
def test_corpus_file(hl7_corpus: Path, relative: str) -> None:
    data = (hl7_corpus / relative).read_bytes()
    try:
        messages = _read(relative, data)
    except HL7Error as err:
        assert relative in REJECTED, f"{relative} refused: {err}"
        assert REJECTED[relative] in err.bare_reason
        assert err.segment_index is not None, "a refusal names the segment"
        return
    assert relative not in REJECTED, f"{relative} should be refused ({REJECTED.get(relative)})"

    entry = MANIFEST.get(relative)
    if entry is not None and entry.message_types:
        # The manifest lists each distinct MSH-9 of a file once, as written: with the message's
        # own component separator (ADT~A24) and the structure id when the sender gave one.
        component = messages[0].enc.component
        written = {"^".join(w.split(component)[:2]).rstrip("^") for w in entry.message_types}
        assert {m.message_type for m in messages} == written
        assert {m.version for m in messages} == {entry.version.split(component)[0]}
    if len(messages) == 1 and (naive := _naive_control_id(data)) is not None:
        assert messages[0].control_id == naive

    for message in messages:
        _check_reachable(message)


def _check_reachable(message: Message) -> None:
    """Every segment, Z-segments included, can be reached by name; the analyst's tree and the
    field rules read the same values through the same paths; validation returns issues only."""
    for seg in message.segments:
        assert seg in message.all(seg.name)
    tree = describe(message)
    for node in tree.walk():
        if node.kind in ("field", "repetition", "component", "subcomponent") and not node.children:
            assert message.get(node.path) == node.value, node.path
    issues = validate_structure(message)
    assert all(isinstance(i, Issue) for i in issues)


def test_tolerated_malformed_files_read_as_intended(hl7_corpus: Path) -> None:
    def one(name: str) -> Message:
        return parse((hl7_corpus / "malformed" / name).read_bytes())

    blank = one("efferent_adt_o01_blank_line_crlf.hl7")
    assert [s.name for s in blank] == ["MSH", "PID", "NK1", "NK1", "PV1"]

    mixed = one("elixir_latin1_bytes_in_msh9.hl7")
    assert mixed.trigger_event == "Üi²"  # latin-1 bytes
    assert mixed.get("PID-11(2).1") == "NICKELL’S PICKLES"  # UTF-8 next to them
    assert any(i.code == "message_type" for i in validate_structure(mixed))

    truncated = one("elixir_oru_r01_truncated_segments.hl7")
    assert truncated.enc.truncation == "#"
    assert any(i.code == "truncated" for i in validate_structure(truncated))

    bom = one("fhirconv_adt_a04_utf8_bom.hl7")
    assert bom.message_type == "ADT^A04" and bom.msh.name == "MSH"

    doubled = one("lfh_double_backslash_lf_only.hl7")
    assert doubled.enc.escape == "\\" and doubled.enc.subcomponent == "&"
    assert [s.name for s in doubled][-1] == "PRB"
    assert doubled.get("AL1(2)-5(2)") == "VOMITING\\r"  # literal text, kept


def test_batch_files_split_into_their_messages(hl7_corpus: Path) -> None:
    def ids(name: str) -> list[str]:
        return [
            parse(m).control_id for m in split_batch((hl7_corpus / "batch" / name).read_bytes())
        ]

    assert ids("pythonhl7_fhs_bhs_bts_fts_three_messages.hl7") == [
        "12334456778890",
        "12334456778891",
        "12334456778890",  # the source repeats the first control id
    ]
    assert ids("oie_fhs_bhs_orm_no_trailers.hl7") == ["12345678"]
    assert len(ids("oie_three_siu_no_envelope.hl7")) == 3
